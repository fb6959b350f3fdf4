"""Coverage-guided fuzzing (atheris / libFuzzer) of the runtimes' decode path and the JSON event parser.

Run directly for a longer campaign: ``python tests/jobs/atheris_inputs.py -runs=1000000 -max_len=512``.
Any exception other than a DecodeError / BadEvent / JSONDecodeError is a crash libFuzzer reports.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    import orjson

    from jobs.core.events import BadEvent, event_from_json
    from jobs.runtime.kafka_io import WireFormat
    from schemas.codec import Codec
    from schemas.errors import DecodeError

WIRE = WireFormat(Codec.default())
FINGERPRINTS = sorted(WIRE.codec.known_fingerprints())


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    choice = fdp.ConsumeIntInRange(0, len(FINGERPRINTS))
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())
    message = rest if choice == len(FINGERPRINTS) else b"\xc3\x01" + FINGERPRINTS[choice] + rest
    with contextlib.suppress(DecodeError, BadEvent):
        WIRE.decode_event(message)
    with contextlib.suppress(orjson.JSONDecodeError, BadEvent):
        event_from_json(orjson.loads(rest))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
