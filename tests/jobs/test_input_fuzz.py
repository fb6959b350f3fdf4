"""Hostile input against the event parsers, the runtimes' decode path and ``replay``.

Every bad record must end in the dead letter with a reason (never an exception of another kind,
never a hang), and the good records around it must give exactly the samples they give alone.
The catalogue in :mod:`tests.jobs.bad_inputs` holds explicit regression cases; hypothesis adds
bounded random search on top.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.bench.replay import synth_events
from jobs.config import JoinConfig
from jobs.core.events import BadEvent, Event, event_from_json
from jobs.runtime.kafka_io import WireFormat
from jobs.runtime.replay.local import run_replay
from schemas.codec import Codec
from schemas.errors import DecodeError
from tests.jobs.bad_inputs import IMPRESSION, LABEL, SNAPSHOT, bad_json_lines, bad_messages

ROOT = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WIRE = WireFormat(Codec.default())


def parse_line(raw: bytes) -> Event:
    """What replay does with one line: JSON, then the event parser (either may raise)."""
    return event_from_json(orjson.loads(raw))


# -- the catalogue: each case is rejected with a reason -----------------------------------------


@pytest.mark.parametrize(("name", "raw"), bad_json_lines(), ids=[n for n, _ in bad_json_lines()])
def test_bad_json_lines_are_rejected_with_a_reason(name: str, raw: bytes) -> None:
    assert b"\n" not in raw, name
    with pytest.raises((orjson.JSONDecodeError, BadEvent)) as info:
        parse_line(raw)
    assert str(info.value).strip(), f"{name}: empty reason"
    assert len(str(info.value)) < 300, f"{name}: the reason should be short, got {len(str(info.value))} chars"


@pytest.mark.parametrize(("name", "value"), bad_messages(), ids=[n for n, _ in bad_messages()])
def test_bad_messages_are_rejected_with_a_reason(name: str, value: bytes) -> None:
    with pytest.raises((DecodeError, BadEvent)) as info:
        WIRE.decode_event(value)
    assert str(info.value).strip(), f"{name}: empty reason"


def test_null_value_is_rejected() -> None:
    with pytest.raises(BadEvent, match="null value"):
        WIRE.decode_event(None)


# -- random search: only a valid event or BadEvent, whatever the JSON ---------------------------

json_scalars = (
    st.none() | st.booleans() | st.text(max_size=20)
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
valid_forms = st.sampled_from([IMPRESSION, SNAPSHOT, LABEL])


@FUZZ
@given(valid_forms, st.dictionaries(st.sampled_from(
    ["type", "request_id", "impression_id", "user_id", "item_id", "event_time_ms", "position", "context",
     "sparse", "dense", "label_type", "value", "extra"]), json_values, max_size=4),
    st.sets(st.sampled_from(["request_id", "event_time_ms", "context", "dense", "value", "type"]), max_size=2))
def test_any_field_values_give_an_event_or_bad_event(
    form: dict[str, Any], replaced: dict[str, Any], removed: set[str]
) -> None:
    obj = {k: v for k, v in {**form, **replaced}.items() if k not in removed}
    try:
        event = event_from_json(obj)
    except BadEvent as exc:
        assert str(exc)
        return
    # accepted: it must be encodable on the wire and come back the same (nothing invalid slips through)
    back = WIRE.decode_event(WIRE.encode_event_json({"type": obj["type"], **_fields(event)}))
    assert back == event


def _fields(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__slots__}  # type: ignore[attr-defined]


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_line_gives_an_event_or_a_reason(raw: bytes) -> None:
    try:
        parse_line(raw)
    except (orjson.JSONDecodeError, BadEvent) as exc:
        assert str(exc)


# -- random search on the runtimes' decode path ---------------------------------------------------

_GOOD_MESSAGES = [WIRE.encode_event_json(e) for e in (IMPRESSION, SNAPSHOT, LABEL)]


@FUZZ
@given(st.sampled_from(_GOOD_MESSAGES), st.integers(0, 200), st.binary(max_size=40), st.integers(0, 255))
def test_mutated_messages_give_an_event_or_a_reason(good: bytes, at: int, insert: bytes, flip: int) -> None:
    at %= len(good) + 1
    for value in (good[:at], good[:at] + insert + good[at:], good[:at] + bytes([flip]) + good[at + 1:]):
        try:
            WIRE.decode_event(value)
        except (DecodeError, BadEvent) as exc:
            assert str(exc)


@FUZZ
@given(st.sampled_from(sorted(Codec.default().known_fingerprints())), st.binary(max_size=200))
def test_random_bodies_under_known_fingerprints_give_an_event_or_a_reason(fp: bytes, body: bytes) -> None:
    try:
        WIRE.decode_event(b"\xc3\x01" + fp + body)
    except (DecodeError, BadEvent) as exc:
        assert str(exc)


# -- replay: bad lines between good ones ----------------------------------------------------------


def _good_lines(n: int = 600) -> list[bytes]:
    return [orjson.dumps(e) for e in synth_events(n, seed=11, window_ms=60_000, horizon_ms=600_000)]


def _replay(tmp: Path, lines: list[bytes], name: str) -> tuple[list[bytes], list[dict[str, Any]], list[bytes]]:
    events = tmp / f"{name}.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    out, unmatched, dead = (tmp / f"{name}.{kind}.jsonl" for kind in ("samples", "unmatched", "dead"))
    join = JoinConfig.model_validate({"tasks": [{"name": "click", "window": "1m", "horizon": "10m"}]})
    run_replay(events, out, unmatched, dead, join)
    return (
        out.read_bytes().splitlines(),
        [json.loads(x) for x in dead.read_bytes().splitlines()],
        unmatched.read_bytes().splitlines(),
    )


def test_replay_dead_letters_every_bad_line_and_joins_the_good_ones(tmp_path: Path) -> None:
    good = _good_lines()
    bad = bad_json_lines()
    mixed: list[bytes] = []
    bad_at: dict[int, str] = {}
    step = len(good) // len(bad)
    for i, line in enumerate(good):
        if i % step == 0 and len(bad_at) < len(bad):
            name, raw = bad[len(bad_at)]
            mixed.append(raw)
            bad_at[len(mixed)] = name
        mixed.append(line)
    want_samples, want_dead, want_unmatched = _replay(tmp_path, good, "good")
    assert want_samples and not want_dead
    got_samples, got_dead, got_unmatched = _replay(tmp_path, mixed, "mixed")
    assert got_samples == want_samples
    assert got_unmatched == want_unmatched
    assert {d["line"]: d["reason"] for d in got_dead}.keys() == bad_at.keys(), [d["reason"] for d in got_dead]
    assert all(d["reason"] for d in got_dead)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(1, 299), st.binary(min_size=1, max_size=60).filter(
    lambda b: b"\n" not in b and b"\r" not in b and b.strip())), max_size=8))
def test_replay_random_garbage_lines_never_change_the_samples(
    tmp_path: Path, garbage: list[tuple[int, bytes]]
) -> None:
    good = _good_lines(300)
    mixed = list(good)
    for at, raw in sorted(garbage, reverse=True):
        mixed.insert(min(at, len(mixed)), raw)
    want_samples, _, _ = _replay(tmp_path, good, "good")
    got_samples, got_dead, _ = _replay(tmp_path, mixed, "mixed")
    assert len(got_dead) == len(garbage)
    assert got_samples == want_samples


def test_replay_cli_end_to_end_on_a_mixed_file(tmp_path: Path) -> None:
    lines = [orjson.dumps(IMPRESSION), *(raw for _, raw in bad_json_lines()), orjson.dumps(LABEL),
             orjson.dumps({**IMPRESSION, "impression_id": "i2"})]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    out, dead = tmp_path / "samples.jsonl", tmp_path / "dead.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.sample_join", "replay", "--events", str(events), "--out", str(out),
         "--deadletter", str(dead), "--unmatched", str(tmp_path / "unmatched.jsonl")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    samples = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(s["sample_id"] for s in samples) == ["i2:click:NEGATIVE", "ib:click:POSITIVE"]
    letters = [json.loads(x) for x in dead.read_text().splitlines()]
    assert [d["line"] for d in letters] == list(range(2, 2 + len(bad_json_lines())))
    assert all(d["reason"] for d in letters)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_replay_cli_unreadable_events_file_is_one_line_error(tmp_path: Path, kind: str) -> None:
    events = tmp_path / "events.jsonl"
    if kind == "directory":
        events.mkdir()
    out = tmp_path / "samples.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.sample_join", "replay", "--events", str(events), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert str(events) in proc.stderr
    assert not out.exists()


def test_atheris_campaign_finds_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests/jobs/atheris_inputs.py"), "-runs=20000", "-max_len=512", "-seed=1",
         f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 20000 runs" in proc.stderr
