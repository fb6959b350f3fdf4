"""Vocabulary soak: ``python -m trainer.bench.vocab_soak``: resident memory on an endless stream of new IDs.

A generated stream brings ``--ids-per-hour`` user IDs never seen before per simulated hour (half of
the impressions by default; the other half are users returning, mostly the recent new ones, so that
many pass admission), with items from a Zipf catalogue. It runs through the trainer's real train step
(:class:`trainer.state.TrainerState`: vocabulary lookups, growth, the compiled step), stream order,
with ``features.vocab.memory_budget_mb`` at ``--budget-mb``, for ``--hours`` simulated hours or
``--minutes`` of wall-clock time, whichever ends first.

Every ``--report-every`` it samples the process's resident memory (``VmRSS``) and what the budget
counts (the fields' capacities at their per-slot cost), the tables' actual bytes, each field's
capacity, admitted and pending IDs and the evictions for room; a progress line goes to stderr. The
report compares the growth of RSS since the first sample (TensorFlow and the model loaded, first steps
run) with the budget; ``--json FILE`` writes the samples.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common.cli import EXIT_USAGE, Parser, fail, positive_int
from common.errors import ConfigError
from common.output import write_atomic
from trainer.samples import NEGATIVE, POSITIVE, Sample

HOUR_MS = 3_600_000
START_MS = 1_700_000_000_000
WINDOW_MS = 600_000
CATALOGUE = 200_000  # items
RETURN_SCALE = 50.0  # a returning user is this many new users back, times a Pareto(1) draw


def _say(message: str) -> None:
    print(f"vocab_soak: {message}", file=sys.stderr, flush=True)


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc/self/status``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmRSS in /proc/self/status")


class NewIdStream:
    """Impressions: a share ``new_share`` from users never seen before (``ids_per_hour`` of them per
    simulated hour), the others from users seen before, mostly recent ones; items Zipf-distributed."""

    def __init__(self, ids_per_hour: int, new_share: float, seed: int):
        self.rng = np.random.default_rng(seed)
        self.new_share = new_share
        self.ms_per_impression = HOUR_MS * new_share / ids_per_hour
        self.impressions = 0
        self.users = 0  # new users so far

    @property
    def hours(self) -> float:
        return self.impressions * self.ms_per_impression / HOUR_MS

    def batch(self, size: int) -> list[Sample]:
        rng = self.rng
        new = rng.random(size) < self.new_share
        if self.users == 0:
            new[:] = True
        users = np.empty(size, np.int64)
        users[new] = self.users + np.arange(int(new.sum()))
        self.users += int(new.sum())
        back = (rng.pareto(1.0, int((~new).sum())) * RETURN_SCALE).astype(np.int64)
        users[~new] = np.maximum(0, self.users - 1 - back)
        items = rng.zipf(1.2, size) % CATALOGUE
        clicks = rng.random(size) < 0.05
        positions = rng.integers(0, 8, size)
        out = []
        for i in range(size):
            n = self.impressions + i
            shown = START_MS + int(n * self.ms_per_impression)
            clicked = bool(clicks[i])
            out.append(Sample(
                sample_id=f"s{n}", impression_id=f"i{n}", user_id=f"user-{users[i]:012d}", item_id=f"item-{items[i]}",
                position=int(positions[i]), context={}, sparse={}, dense={}, label=int(clicked),
                attribution=POSITIVE if clicked else NEGATIVE, impression_time_ms=shown,
                emit_time_ms=shown + WINDOW_MS, delay_ms=60_000 if clicked else None,
            ))
        self.impressions += size
        return out


def table_bytes(state: Any) -> int:
    """What the per-ID tables and their optimizer slots hold now."""
    from trainer.growth import row_bytes

    return state.spec.base_rows * row_bytes(state.model)


def snapshot(state: Any, stream: NewIdStream, started: float, baseline: int) -> dict[str, Any]:
    vocabs = state.vocabs
    rss = rss_bytes()
    return {
        "seconds": round(time.monotonic() - started, 1),
        "simulated_hours": round(stream.hours, 4),
        "samples": stream.impressions,
        "new_ids": stream.users,
        "steps": state.step,
        "rss_mb": round(rss / 2**20, 1),
        "rss_growth_mb": round((rss - baseline) / 2**20, 1),
        "budget_held_mb": round((vocabs.held_bytes() or 0) / 2**20, 2),
        "table_mb": round(table_bytes(state) / 2**20, 2),
        "fields": {
            name: {
                "capacity": v.capacity, "admitted": len(v), "pending": len(v.pending_stats()[0]),
                "displaced": v.displaced, "forgotten": v.forgotten, "evicted": v.evicted,
            }
            for name, v in vocabs.vocabs.items()
        },
    }


def soak(args: argparse.Namespace) -> dict[str, Any]:
    from trainer.config import TrainerConfig
    from trainer.fit import targets
    from trainer.samples import SampleTable
    from trainer.state import TrainerState

    config = TrainerConfig.load(None, {
        "features.vocab.memory_budget_mb": args.budget_mb,
        "fit.batch_size": args.batch_size,
        "fit.order": "stream",
        "fit.seed": args.seed,
    })
    stream = NewIdStream(args.ids_per_hour, args.new_share, args.seed)
    first = SampleTable(stream.batch(args.batch_size))
    state = TrainerState.create(config, first)
    state.set_order("stream")

    def step(table: SampleTable) -> None:
        rows = np.arange(len(table))
        state.train_on_batch(state.encode(state.prepare(table), rows), targets(table, rows, None))

    step(first)
    for _ in range(20):  # the compiled step traced, the first allocations made
        step(SampleTable(stream.batch(args.batch_size)))
    started = time.monotonic()
    baseline = rss_bytes()
    samples = [snapshot(state, stream, started, baseline)]
    deadline = started + args.minutes * 60.0
    next_report = started + args.report_every
    while stream.hours < args.hours and time.monotonic() < deadline:
        step(SampleTable(stream.batch(args.batch_size)))
        if time.monotonic() >= next_report:
            next_report += args.report_every
            samples.append(snapshot(state, stream, started, baseline))
            _say(progress(samples[-1], args.budget_mb))
    samples.append(snapshot(state, stream, started, baseline))
    _say(progress(samples[-1], args.budget_mb))
    return {
        "budget_mb": args.budget_mb,
        "ids_per_hour": args.ids_per_hour,
        "new_share": args.new_share,
        "batch_size": args.batch_size,
        "baseline_rss_mb": round(baseline / 2**20, 1),
        "max_rss_growth_mb": max(s["rss_growth_mb"] for s in samples),
        "finished": "hours" if stream.hours >= args.hours else "minutes",
        "samples": samples,
    }


def progress(s: dict[str, Any], budget_mb: float) -> str:
    fields = ", ".join(
        f"{name} {f['admitted']:,}/{f['capacity']:,} ({f['pending']:,} pending, {f['displaced']:,} displaced)"
        for name, f in s["fields"].items()
    )
    return (
        f"{s['simulated_hours']:.3f} h simulated, {s['samples']:,} samples, {s['new_ids']:,} new IDs: RSS "
        f"{s['rss_mb']:,.0f} MB ({s['rss_growth_mb']:+,.0f} MB since the start; budget {budget_mb:g} MB, held "
        f"{s['budget_held_mb']:.1f}); {fields}"
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Budget {report['budget_mb']:g} MB, {report['ids_per_hour']:,} new IDs per simulated hour "
        f"({report['new_share']:.0%} of the impressions), batches of {report['batch_size']}; RSS at the start "
        f"(TensorFlow, the model, 21 steps run) {report['baseline_rss_mb']:,.0f} MB.",
        "",
        "| wall s | simulated h | samples | new IDs | RSS MB | RSS growth MB | budget held MB | tables MB | "
        "user_id capacity / admitted / pending | displaced |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in report["samples"]:
        user = s["fields"].get("user_id", {})
        lines.append(
            f"| {s['seconds']:g} | {s['simulated_hours']:.3f} | {s['samples']:,} | {s['new_ids']:,} | "
            f"{s['rss_mb']:,.0f} | {s['rss_growth_mb']:+,.0f} | {s['budget_held_mb']:.1f} | {s['table_mb']:.1f} | "
            f"{user.get('capacity', 0):,} / {user.get('admitted', 0):,} / {user.get('pending', 0):,} | "
            f"{user.get('displaced', 0):,} |"
        )
    lines += ["", f"Largest RSS growth: {report['max_rss_growth_mb']:,.0f} MB against a budget of "
              f"{report['budget_mb']:g} MB."]
    return "\n".join(lines)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="python -m trainer.bench.vocab_soak",
        description="Resident memory of the trainer's real train step on an endless stream of new IDs, under "
        "features.vocab.memory_budget_mb: RSS over time against the budget.",
    )
    parser.add_argument("--ids-per-hour", type=positive_int, default=1_000_000, metavar="N",
                        help="user IDs never seen before per simulated hour")
    parser.add_argument("--new-share", type=positive_float, default=0.5, metavar="SHARE",
                        help="the share of impressions from new users (the rest: users returning)")
    parser.add_argument("--hours", type=positive_float, default=1.0, metavar="H",
                        help="simulated hours to run")
    parser.add_argument("--minutes", type=positive_float, default=30.0, metavar="M",
                        help="wall-clock minutes at most (the run stops at whichever comes first)")
    parser.add_argument("--budget-mb", type=positive_float, default=64.0, metavar="MB",
                        help="features.vocab.memory_budget_mb")
    parser.add_argument("--batch-size", type=positive_int, default=1024, metavar="N", help="samples per train step")
    parser.add_argument("--report-every", type=positive_float, default=10.0, metavar="SECONDS",
                        help="seconds of wall-clock time between samples of RSS")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the stream and the model")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report here as JSON (default: none)")
    args = parser.parse_args(argv)
    if args.new_share > 1:
        parser.error(f"--new-share: expected a share in (0, 1], got {args.new_share:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trainer.__main__ import quiet_tensorflow
    from trainer.quiet import import_tensorflow

    import_tensorflow()
    quiet_tensorflow()
    logging.getLogger("trainer").setLevel(logging.WARNING)
    try:
        report = soak(args)
    except ConfigError as exc:  # a budget smaller than the fields' starting capacities
        return fail("python -m trainer.bench.vocab_soak", exc, EXIT_USAGE)
    print(markdown(report))
    if args.json is not None:
        write_atomic(args.json, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
