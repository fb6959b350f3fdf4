"""Codec benchmark: encode and decode records/s, and bytes per record against JSON.

    python -m schemas.bench.codec [--n 50000] [--repeat 3] [--records Sample ...] [--json]

For each record type it encodes and decodes a pool of 1,000 distinct, realistic records (the sizes
of the synthetic events: a few context keys, 20 sparse and 20 dense features on snapshots and
samples) and reports the best of --repeat runs of --n records each:

- avro enc/s, avro dec/s: Codec.encode / Codec.decode (single-object encoding, current schema);
- v1 dec/s: decoding the same bytes with a codec whose current schema added an optional field, so
  that they are old-version data (the projection fast path); general: the same through fastavro's
  general schema resolution (Codec(fast_resolution=False)), for comparison;
- json enc/s, json dec/s: orjson (the stdlib json module when orjson is missing) on the JSON form;
- to_avro/s: JSON form -> Avro dict with pydantic validation (schemas.json_forms.to_avro);
- avro B, json B: mean bytes per record (Avro includes the 10-byte header), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.codec import Codec
from schemas.json_forms import to_avro
from schemas.registry import PACKAGE_DIR

try:  # orjson ships with the jobs venv; fall back to the standard library elsewhere
    import orjson

    JSON_LIB = "orjson"
    _dumps: Callable[[Any], bytes] = orjson.dumps
    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the venv
    JSON_LIB = "json"

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads

POOL = 1000
T0 = 1_700_000_000_000


def _features(rng: random.Random) -> tuple[dict[str, str], dict[str, float]]:
    sparse = {f"s{k}": f"v{rng.randrange(100_000)}" for k in range(20)}
    dense = {f"d{k}": round(rng.random(), 6) for k in range(20)}
    return sparse, dense


def make_records(name: str, n: int = POOL, seed: int = 7) -> list[dict[str, Any]]:
    """`n` distinct JSON forms of record `name` (valid for the pydantic models)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        t = T0 + i * 37
        rid, iid = f"r{rng.randrange(10**9):09d}", f"i{rng.randrange(10**9):09d}"
        context = {"page": rng.choice(["feed", "search", "detail"]), "device": rng.choice(["ios", "android"]),
                   "hour": str(rng.randrange(24))}
        if name == "Impression":
            out.append({"request_id": rid, "impression_id": iid, "user_id": f"u{rng.randrange(10**7)}",
                        "item_id": f"v{rng.randrange(10**6)}", "event_time_ms": t,
                        "position": rng.randrange(50), "context": context})
        elif name == "FeatureSnapshot":
            sparse, dense = _features(rng)
            out.append({"request_id": rid, "event_time_ms": t, "sparse": sparse, "dense": dense})
        elif name in ("Label", "UnmatchedLabel"):
            rec: dict[str, Any] = {"request_id": rid, "impression_id": iid, "label_type": "click",
                                   "event_time_ms": t, "value": 1.0}
            if name == "UnmatchedLabel":
                rec["reason"] = rng.choice(["no_impression", "beyond_horizon", "duplicate"])
            out.append(rec)
        elif name == "Sample":
            sparse, dense = _features(rng)
            attribution = rng.choice(["POSITIVE", "NEGATIVE", "LATE_POSITIVE"])
            negative = attribution == "NEGATIVE"
            delay = None if negative else rng.randrange(1, 86_400_000)
            out.append({
                "sample_id": f"{iid}:click:{attribution}", "task": "click", "request_id": rid,
                "impression_id": iid, "user_id": f"u{rng.randrange(10**7)}", "item_id": f"v{rng.randrange(10**6)}",
                "position": rng.randrange(50), "context": context, "impression_time_ms": t,
                "label": 0 if negative else 1, "attribution": attribution,
                "label_time_ms": None if delay is None else t + delay, "delay_ms": delay,
                "emit_time_ms": t + 600_000 if delay is None else t + delay,
                "sparse": sparse, "dense": dense, "has_snapshot": True,
            })
        else:
            raise SystemExit(f"python -m schemas.bench.codec: error: no generator for record {name!r}")
    return out


def _rate(fn: Callable[[Any], Any], items: list[Any], n: int, repeat: int) -> float:
    k = len(items)
    work = [items[i % k] for i in range(n)]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in work:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return n / best


def evolved_codecs(tmp: Path) -> tuple[Codec, Codec]:
    """Codecs whose current definitions add an optional field to the shipped ones (released v1 = shipped):
    (fast resolution, fastavro's general resolution)."""
    root = tmp / "schemas"
    root.mkdir()
    for path in PACKAGE_DIR.glob("*.avsc"):
        schema = json.loads(path.read_text())
        schema["fields"].append({"name": "bench_extra", "type": ["null", "string"], "default": None})
        (root / path.name).write_text(json.dumps(schema))
    shutil.copytree(PACKAGE_DIR / "versions", root / "versions", ignore=shutil.ignore_patterns("__pycache__"))
    return Codec.from_dir(root), Codec.from_dir(root, fast_resolution=False)


def bench_record(
    codec: Codec, name: str, n: int, repeat: int, evolved: tuple[Codec, Codec] | None = None
) -> dict[str, Any]:
    json_forms = make_records(name)
    avro = [to_avro(name, obj) for obj in json_forms]
    encoded = [codec.encode(name, rec) for rec in avro]
    texts = [_dumps(obj) for obj in json_forms]
    for data, rec in zip(encoded[:10], avro[:10], strict=True):  # sanity: the codec round-trips
        assert codec.decode(data, expected=name) == rec

    def enc(rec: dict[str, Any]) -> bytes:
        return codec.encode(name, rec)

    avro_b = sum(map(len, encoded)) / len(encoded)
    json_b = sum(map(len, texts)) / len(texts)
    old: dict[str, float] = {}
    if evolved is not None:
        fast, general = evolved
        old["old_version_decode_per_s"] = _rate(fast.decode, encoded, n, repeat)
        old["old_version_decode_general_per_s"] = _rate(general.decode, encoded, max(n // 2, 1), repeat)
    return {
        "record": name,
        "avro_encode_per_s": _rate(enc, avro, n, repeat),
        "avro_decode_per_s": _rate(codec.decode, encoded, n, repeat),
        "json_encode_per_s": _rate(_dumps, json_forms, n, repeat),
        "json_decode_per_s": _rate(_loads, texts, n, repeat),
        "to_avro_validated_per_s": _rate(lambda o: to_avro(name, o), json_forms, max(n // 5, 1), repeat),
        "avro_bytes": avro_b,
        "json_bytes": json_b,
        "avro_to_json_size": avro_b / json_b,
        **old,
    }


def main(argv: list[str] | None = None) -> int:
    codec = Codec.default()
    parser = argparse.ArgumentParser(prog="python -m schemas.bench.codec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="records per timed run (default 50000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement, best kept (default 3)")
    parser.add_argument("--records", nargs="+", choices=codec.records, metavar="RECORD",
                        help=f"records to measure (default: all of {', '.join(codec.records)})")
    parser.add_argument("--json", action="store_true", help="print one JSON object per record instead of a table")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        parser.exit(2, f"{parser.prog}: error: --n and --repeat must be >= 1\n")
    names = args.records or ["Impression", "FeatureSnapshot", "Label", "Sample", "UnmatchedLabel"]
    names = [n for n in names if n in codec.records]
    with tempfile.TemporaryDirectory() as tmp:
        evolved = evolved_codecs(Path(tmp))
        results = [bench_record(codec, name, args.n, args.repeat, evolved) for name in names]
    if args.json:
        for r in results:
            print(json.dumps({**r, "json_lib": JSON_LIB, "python": sys.version.split()[0]}))
        return 0
    print(f"schemas codec benchmark: fastavro single-object encoding vs {JSON_LIB}; best of {args.repeat} x "
          f"{args.n} records; Python {sys.version.split()[0]}")
    head = (f"{'record':<16}{'avro enc/s':>12}{'avro dec/s':>12}{'v1 dec/s':>10}{'general':>9}"
            f"{'json enc/s':>12}{'json dec/s':>12}{'to_avro/s':>11}{'avro B':>9}{'json B':>9}{'avro/json':>10}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['record']:<16}{r['avro_encode_per_s']:>12,.0f}{r['avro_decode_per_s']:>12,.0f}"
              f"{r['old_version_decode_per_s']:>10,.0f}{r['old_version_decode_general_per_s']:>9,.0f}"
              f"{r['json_encode_per_s']:>12,.0f}{r['json_decode_per_s']:>12,.0f}"
              f"{r['to_avro_validated_per_s']:>11,.0f}{r['avro_bytes']:>9.1f}{r['json_bytes']:>9.1f}"
              f"{r['avro_to_json_size']:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
