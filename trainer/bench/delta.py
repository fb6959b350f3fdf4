"""Delta benchmark: bytes per delta against the full export, at 10 s and 1 min export intervals.

    python -m trainer.bench.delta [--rate 1000] [--minutes 6] [--intervals 10s 1m] [--json OUT]

A generated stream of ``--rate`` impressions per second of stream time: users and items drawn with a
heavy-tailed popularity (weights 1/rank^``--skew`` over ``--users`` and ``--items`` IDs, so new IDs keep
coming while a head of IDs comes back all the time), a page, a city per user, a position, a dense rate,
clicks from a logistic model (about 10 %), each sample out as its click is known (no delayed clicks:
the delay correction is not what is measured). It is trained through the sidecar's train step (the
shipped trainer config as ``trainer run`` uses it: vocabularies of ``sidecar.vocab_capacity`` slots per
tracked field, batches of ``sidecar.batch.size``, the shipped model), and at every export interval of
stream time a version is written the sidecar's way (``VersionStore.export`` with
:class:`~trainer.delta.DeltaExports`: the delta, proven to apply onto the previous version, and the
full SavedModel of the same step beside it; a full export, then the shipped ``sidecar.delta.full_every``
deltas, again and again). One run serves every interval (a model directory per interval).

Reported per interval, over the versions after ``--warmup`` of stream time (at first every ID is new):
the delta's bytes on disk (median, mean, 90th percentile), the full export's, the ratio, the rows
changed per delta against the rows served, and the vocabulary's changes. The machine line says where
it ran. ``--json OUT`` writes the figures; the table goes to stdout (docs/serving.md has a run of it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common.cli import Parser, duration, positive_int
from common.output import write_atomic

START_MS = 1_700_000_000_000


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def stream(rate: int, seconds: int, users: int, items: int, skew: float, seed: int) -> list[dict[str, Any]]:
    """Samples in emission order: ``rate`` impressions a second for ``seconds``, heavy-tailed IDs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = rate * seconds

    def draw(count: int) -> np.ndarray:
        weights = 1.0 / np.arange(1, count + 1) ** skew
        ranks = rng.choice(count, size=n, p=weights / weights.sum())
        return rng.permutation(count)[ranks]  # popularity independent of the ID's number

    user, item = draw(users), draw(items)
    user_bias, item_bias = rng.normal(0, 0.6, users), rng.normal(0, 0.6, items)
    pages = np.array(["feed", "search", "detail"])
    page = rng.integers(0, 3, n)
    position = rng.integers(0, 10, n)
    logit = -2.4 + user_bias[user] + item_bias[item] + np.array([0.0, 0.4, -0.3])[page] - 0.05 * position
    clicked = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    delay = rng.integers(1_000, 60_000, n)
    out: list[dict[str, Any]] = []
    for i in range(n):
        t = START_MS + i * 1000 // rate
        click = bool(clicked[i])
        emit = t + int(delay[i]) if click else t + 60_000
        attribution = "POSITIVE" if click else "NEGATIVE"
        out.append({
            "sample_id": f"i{i}:click:{attribution}", "task": "click", "request_id": f"r{i}",
            "impression_id": f"i{i}", "user_id": f"u{user[i]}", "item_id": f"v{item[i]}",
            "position": int(position[i]), "context": {"page": str(pages[page[i]])},
            "sparse": {"city": f"c{user[i] % 300}"},
            "dense": {"u_ctr_7d": round(float(1.0 / (1.0 + math.exp(2.4 - user_bias[user[i]]))), 4)},
            "impression_time_ms": t, "label": int(click), "attribution": attribution,
            "label_time_ms": emit if click else None, "delay_ms": int(delay[i]) if click else None,
            "emit_time_ms": emit, "has_snapshot": True,
        })
    out.sort(key=lambda s: s["emit_time_ms"])
    return out


def payload_parts(delta_dir: Path) -> dict[str, int]:
    """Compressed bytes of a delta's payload by part: changed rows and variables, trainer.json and
    vocabulary changes; and the manifest."""
    from trainer.delta import CHANGES, MANIFEST, PAYLOAD

    parts = {"variables": 0, "changes": 0, "manifest": (delta_dir / MANIFEST).stat().st_size}
    with zipfile.ZipFile(delta_dir / PAYLOAD) as archive:
        for info in archive.infolist():
            parts["changes" if info.filename == f"{CHANGES}.npy" else "variables"] += info.compress_size
    return parts


def delta_facts(version_dir: Path) -> dict[str, Any]:
    from trainer.delta import DELTA_DIR, read_manifest

    manifest = read_manifest(version_dir)
    assert manifest is not None
    rows = sum(e["rows"] if e["rows"] is not None else (e["shape"][0] if e["shape"] else 1)
               for e in manifest["variables"])
    vocab = manifest.get("vocab") or {}
    return {
        "rows_changed": rows,
        "whole_variables": sum(1 for e in manifest["variables"] if e["rows"] is None),
        "admitted": sum(v.get("admitted", 0) for v in vocab.values()),
        "evicted": sum(v.get("evicted", 0) for v in vocab.values()),
        "ids_changed": sum(v.get("ids_changed", 0) for v in vocab.values()),
        "parts": payload_parts(version_dir / DELTA_DIR),
    }


def slim(version_dir: Path) -> None:
    """A delta version's directory without its full SavedModel (the bench's disk: the chain applies
    from the deltas alone)."""
    from trainer.delta import DELTA_DIR

    for entry in version_dir.iterdir():
        if entry.name != DELTA_DIR:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(interval_s: int, versions: list[dict[str, Any]], warmup_s: int) -> dict[str, Any]:
    deltas = [v for v in versions if v["export"] == "delta" and v["stream_s"] > warmup_s]
    if not deltas:
        return {"interval_s": interval_s, "deltas": 0}
    sizes = [v["delta_bytes"] for v in deltas]
    fulls = [v["full_bytes"] for v in deltas]
    median_full = _quantile(fulls, 0.5)
    parts = {k: round(sum(v["parts"][k] for v in deltas) / len(deltas)) for k in deltas[0]["parts"]}
    return {
        "interval_s": interval_s,
        "samples_per_delta": _quantile([v["samples"] - u["samples"] for u, v in itertools.pairwise(versions)
                                        if v in deltas], 0.5),
        "deltas": len(deltas),
        "delta_bytes": {"median": _quantile(sizes, 0.5), "mean": round(sum(sizes) / len(sizes)),
                        "p90": _quantile(sizes, 0.9)},
        "full_bytes": median_full,
        "ratio": round(_quantile(sizes, 0.5) / median_full, 5),
        "delta_parts_mean": parts,
        "rows_changed_median": _quantile([v["rows_changed"] for v in deltas], 0.5),
        "admitted_median": _quantile([v["admitted"] for v in deltas], 0.5),
        "evicted_median": _quantile([v["evicted"] for v in deltas], 0.5),
        "ids_changed_median": _quantile([v["ids_changed"] for v in deltas], 0.5),
        "write_s_median": round(_quantile([v["write_s"] for v in deltas], 0.5), 2),
        "delta_s_median": round(_quantile([v["delta_s"] for v in deltas], 0.5), 2),
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import numpy as np

    from trainer.config import TrainerConfig
    from trainer.delta import DeltaExports
    from trainer.features import FeatureSpec
    from trainer.fit import targets
    from trainer.samples import SampleTable, parse_sample
    from trainer.sidecar.loop import sidecar_config
    from trainer.sidecar.versions import VersionStore
    from trainer.state import TrainerState

    seconds = int(args.minutes * 60)
    _say(f"generating {args.rate * seconds:,} impressions ({args.minutes:g} min at {args.rate}/s), "
         f"{args.users:,} users, {args.items:,} items, skew {args.skew}")
    records = stream(args.rate, seconds, args.users, args.items, args.skew, args.seed)
    config = sidecar_config(TrainerConfig.load(args.config, {}))
    batch = config.sidecar.batch.size
    intervals = sorted(int(i) // 1000 for i in args.intervals)
    stores = {i: VersionStore(workdir / f"every-{i}s", keep=3) for i in intervals}
    # a full export, then sidecar.delta.full_every deltas (the figures are the deltas')
    full_every = config.sidecar.delta.full_every
    exporters = {i: DeltaExports(stores[i].model_dir, enabled=True, full_every=full_every) for i in intervals}
    next_at = {i: START_MS + i * 1000 for i in intervals}
    numbers = dict.fromkeys(intervals, 0)
    versions: dict[int, list[dict[str, Any]]] = {i: [] for i in intervals}
    state: Any = None
    trained, started, last_said = 0, time.monotonic(), 0
    for start in range(0, len(records), batch):
        table = SampleTable([parse_sample(r) for r in records[start:start + batch]])
        if state is None:
            state = TrainerState(config, FeatureSpec.from_table(table, config.features))
        rows = np.arange(len(table))
        state.train_and_score(state.encode(state.prepare(table), rows), targets(table, rows, None))
        trained += len(table)
        now = records[start + len(table) - 1]["emit_time_ms"]
        for i in intervals:
            if now < next_at[i]:
                continue
            while next_at[i] <= now:  # one version at the first batch past the mark (a quiet stretch has none)
                next_at[i] += i * 1000
            numbers[i] += 1
            clock = time.monotonic()
            written = stores[i].export(state, numbers[i], exporters[i])
            entry: dict[str, Any] = {"version": numbers[i], "export": written.kind, "samples": trained,
                                     "stream_s": (now - START_MS) // 1000, "write_s": time.monotonic() - clock,
                                     "full_bytes": written.full_bytes, "delta_bytes": written.delta_bytes,
                                     "delta_s": written.delta_seconds}
            assert written.refused is None, written.refused
            if written.kind == "delta":
                entry.update(delta_facts(written.path))
            versions[i].append(entry)
            previous = versions[i][-2] if len(versions[i]) > 1 else None
            if previous is not None and previous["export"] == "delta":  # a chain needs the deltas, not these
                slim(stores[i].path(previous["version"]))
            stores[i].prune({numbers[i]})
        minute = (now - START_MS) // 60_000
        if minute > last_said:
            last_said = minute
            _say(f"{minute} min of stream: {trained:,} samples trained, "
                 f"{trained / (time.monotonic() - started):,.0f}/s with the exports, "
                 + ", ".join(f"{len(versions[i])} versions every {i} s" for i in intervals))
    assert state is not None
    variables = {v.path: int(np.prod(v.shape)) for v in state.model.variables}
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, {platform.python_version()}",
        "traffic": {"rate_per_s": args.rate, "minutes": args.minutes, "impressions": len(records),
                    "users": args.users, "items": args.items, "skew": args.skew, "seed": args.seed},
        "model": {"name": config.model.name, "parameters": sum(variables.values()),
                  "vocab_capacity": config.sidecar.vocab_capacity, "batch": batch,
                  "tracked_fields": [f for f, _ in state.spec.tracked],
                  "vocab": {f: s["size"] for f, s in state.vocabs.stats().items()}},
        "full_every": full_every,
        "warmup_s": args.warmup // 1000,
        "results": [summarize(i, versions[i], args.warmup // 1000) for i in intervals],
        "versions": {str(i): versions[i] for i in intervals},
        "seconds": round(time.monotonic() - started, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| interval | samples per delta | deltas | delta bytes: median (mean, p90) | full export bytes | "
        "delta / full | rows changed per delta | IDs admitted / evicted per delta | s per version: the delta "
        "(with the full export) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["results"]:
        if not r["deltas"]:
            continue
        d = r["delta_bytes"]
        lines.append(
            f"| {r['interval_s']} s | {r['samples_per_delta']:,} | {r['deltas']} | {d['median']:,} ({d['mean']:,}, "
            f"{d['p90']:,}) | {r['full_bytes']:,} | {100 * r['ratio']:.2f} % | {r['rows_changed_median']:,} | "
            f"{r['admitted_median']:,} / {r['evicted_median']:,} | {r['delta_s_median']} ({r['write_s_median']}) |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m trainer.bench.delta",
        description="Bytes per delta export against the full export, at export intervals of stream time, on a "
        "generated heavy-tailed stream trained through the sidecar's train step.",
    )
    p.add_argument("--rate", type=positive_int, default=1000, metavar="N",
                   help="impressions per second of stream time (default: 1000)")
    p.add_argument("--minutes", type=float, default=6.0, help="minutes of stream time (default: 6)")
    p.add_argument("--intervals", type=duration, nargs="+", default=[10_000, 60_000], metavar="DURATION",
                   help="export intervals of stream time (default: 10s 1m)")
    p.add_argument("--warmup", type=duration, default=120_000, metavar="DURATION",
                   help="stream time left out of the figures (default: 2m)")
    p.add_argument("--users", type=positive_int, default=200_000, metavar="N", help="distinct users (default: 200000)")
    p.add_argument("--items", type=positive_int, default=20_000, metavar="N", help="distinct items (default: 20000)")
    p.add_argument("--skew", type=float, default=1.1, help="popularity exponent: weight 1/rank^skew (default: 1.1)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    p.add_argument("--config", metavar="CONFIG.yaml",
                   help="trainer config (default: none: the shipped defaults, as trainer run uses them)")
    p.add_argument("--workdir", metavar="DIR", help="write the versions here and keep them (default: a temporary "
                   "directory, removed)")
    p.add_argument("--json", metavar="OUT", help="write the figures here (default: none)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if any(i < 1000 or i % 1000 for i in args.intervals):
        build_parser().error(f"--intervals: expected whole seconds, got {[i / 1000 for i in args.intervals]}")
    if args.minutes <= 0:
        build_parser().error(f"--minutes: expected a positive number, got {args.minutes:g}")
    from trainer.quiet import import_tensorflow

    import_tensorflow()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-delta-"))
    try:
        result = run(args, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        write_atomic(Path(args.json), json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{result['machine']}; {result['seconds']} s")
    print(json.dumps({"traffic": result["traffic"], "model": result["model"]}, sort_keys=True))
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
