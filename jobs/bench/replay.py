"""``python -m jobs.bench.replay``: events/s of the replay engines on one events file (docs/performance.md).

Contenders run one after another on the same file and are reported side by side, with each one's
ratio to the reference contender (``--reference``, by default the Flink SQL peer when registered,
else the first one run). Adding a contender is a registration::

    from jobs.bench.replay import BenchContext, BenchResult, register

    @register("flink-sql", description="Flink SQL LEFT JOIN ... BETWEEN interval join, p1")
    def flink_sql(ctx: BenchContext) -> BenchResult:
        ...  # run on ctx.events, return BenchResult(name="flink-sql", events=..., seconds=...)

Every module named in ``CONTENDER_MODULES`` is imported before the run, so that its ``@register``
calls take effect; one that cannot be imported is listed as unavailable, and a contender that raises
is reported as skipped.

Without ``--events`` a deterministic synthetic file (``--events-count``, ``--seed``) is written to
``.bench/`` (a built-in generator, so the benchmark does not depend on ``jobs.generate``).
"""

from __future__ import annotations

import gc
import heapq
import importlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.cli import Parser
from common.output import AtomicFile
from jobs.config import JoinConfig, TaskConfig
from jobs.core.events import FeatureSnapshot, Impression, Label, event_to_json

T0 = 1_700_000_000_000
BENCH_DIR = Path(".bench")

# The modules that register further contenders when imported (the list is explicit: nothing is scanned).
CONTENDER_MODULES: tuple[str, ...] = ("jobs.bench.flink", "jobs.bench.flink_sql")


@dataclass(slots=True)
class BenchContext:
    events: Path  # the events file (JSON lines, docs/wire-format.md)
    events_count: int  # lines in it
    join: JoinConfig  # the tasks and timing every contender should use
    workdir: Path  # scratch space for outputs
    parallelism: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class BenchResult:
    name: str
    events: int
    seconds: float  # wall time
    detail: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why it did not run
    cpu_seconds: float | None = None  # this process's CPU time, when the contender runs in-process

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class Contender:
    name: str
    run: Callable[[BenchContext], BenchResult]
    description: str = ""
    default: bool = True  # run when no --contender is given


CONTENDERS: dict[str, Contender] = {}


def register(
    name: str, *, description: str = "", default: bool = True
) -> Callable[[Callable[[BenchContext], BenchResult]], Callable[[BenchContext], BenchResult]]:
    """Decorator: add a contender to the replay benchmark."""

    def deco(fn: Callable[[BenchContext], BenchResult]) -> Callable[[BenchContext], BenchResult]:
        desc = description or (fn.__doc__ or "").strip().split("\n")[0]
        CONTENDERS[name] = Contender(name, fn, desc, default)
        return fn

    return deco


# -- synthetic events ----------------------------------------------------------------------------
def synth_events(
    count: int,
    seed: int = 7,
    *,
    window_ms: int = 600_000,
    horizon_ms: int = 86_400_000,
    disorder_ms: int = 2_000,
) -> Iterator[dict[str, Any]]:
    """About ``count`` events (docs/wire-format.md JSON form) in arrival order, deterministic for a seed.

    Requests with a feature snapshot and 1-5 impressions, ~8% clicked (a third of those after the
    window, a few beyond the horizon), some "like" labels (no task uses them), duplicate impressions
    and labels, orphan labels; arrival = event time + uniform jitter in ``[0, disorder_ms]``.
    """
    rng = random.Random(seed)
    pending: list[tuple[int, int, dict[str, Any]]] = []  # heap of (arrival, seq, event)

    seq = 0
    produced = 0
    t = T0
    n = 0

    def add(event: dict[str, Any]) -> None:
        nonlocal seq
        heapq.heappush(pending, (event["event_time_ms"] + rng.randint(0, disorder_ms), seq, event))
        seq += 1

    while produced < count:
        t += rng.randint(0, 40)
        rid = f"r{n:09d}"
        n += 1
        user = f"u{rng.randrange(50_000):06d}"
        snapshot = FeatureSnapshot(
            request_id=rid,
            event_time_ms=t + rng.randint(0, 1_000),
            sparse={"city": f"c{rng.randrange(300)}", "device": rng.choice(("ios", "android", "web"))},
            dense={"u_ctr_7d": round(rng.random() * 0.1, 6), "u_activity": round(rng.random() * 5, 6)},
        )
        add(event_to_json(snapshot))
        produced += 1
        for pos in range(rng.randint(1, 5)):
            iid = f"{rid}-{pos}"
            imp = event_to_json(
                Impression(
                    request_id=rid,
                    impression_id=iid,
                    user_id=user,
                    item_id=f"v{rng.randrange(100_000):06d}",
                    event_time_ms=t,
                    position=pos,
                    context={"page": rng.choice(("feed", "search", "detail"))},
                )
            )
            add(imp)
            produced += 1
            if rng.random() < 0.01:
                add(dict(imp))
                produced += 1
            r = rng.random()
            if r < 0.08:
                u = rng.random()
                if u < 0.65:
                    delay = rng.randint(0, window_ms)
                elif u < 0.97:
                    delay = rng.randint(window_ms + 1, min(horizon_ms, 4 * window_ms))
                else:
                    delay = horizon_ms + rng.randint(1, window_ms)
                label = event_to_json(Label(rid, iid, "click", t + delay, 1.0))
                add(label)
                produced += 1
                if rng.random() < 0.02:
                    add(dict(label))
                    produced += 1
            elif r < 0.10:
                add(event_to_json(Label(rid, iid, "like", t + rng.randint(500, 60_000), 1.0)))
                produced += 1
        if rng.random() < 0.005:
            add(event_to_json(Label(rid, f"{rid}-ghost", "click", t + 1_000, 1.0)))
            produced += 1
        while pending and pending[0][0] <= t:
            yield heapq.heappop(pending)[2]
    while pending:
        yield heapq.heappop(pending)[2]


def write_synth_events(path: Path, count: int, seed: int = 7, **kwargs: Any) -> int:
    """Write :func:`synth_events` to ``path`` (atomically); returns the number of lines."""
    lines = 0
    with AtomicFile(path) as out:
        for event in synth_events(count, seed, **kwargs):
            out.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
            lines += 1
        out.commit()
    return lines


# -- built-in contenders -------------------------------------------------------------------------
@register("local", description="replay --engine local: JSON lines in, join core, JSON lines out")
def bench_local(ctx: BenchContext) -> BenchResult:
    from jobs.runtime.replay.local import run_replay

    out = ctx.workdir / "local.samples.jsonl"
    cpu = time.process_time()
    summary = run_replay(
        ctx.events, out, ctx.workdir / "local.unmatched.jsonl", ctx.workdir / "local.deadletter.jsonl", ctx.join
    )
    cpu = time.process_time() - cpu
    return BenchResult(
        "local",
        summary.events_read,
        summary.seconds,
        {"samples": summary.total_samples, "unmatched": summary.total_unmatched},
        cpu_seconds=cpu,
    )


@register("core", description="the join core alone: pre-parsed events, in-memory runner, no I/O", default=False)
def bench_core(ctx: BenchContext) -> BenchResult:
    from jobs.core.events import event_from_json
    from jobs.core.join import SampleJoin
    from jobs.core.local import LocalJoinRunner

    with open(ctx.events, "rb") as f:
        events = [event_from_json(json.loads(line)) for line in f if line.strip()]
    runner = LocalJoinRunner(SampleJoin(ctx.join), ctx.join.out_of_orderness)

    def drain() -> None:
        runner.drain()

    gc.disable()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        runner.run(events, drain)
        runner.finish()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        gc.enable()
    return BenchResult("core", len(events), seconds, {"timers_fired": runner.timers_fired}, cpu_seconds=cpu)


# -- command line --------------------------------------------------------------------------------
def _load_contender_modules() -> dict[str, str]:
    missing: dict[str, str] = {}
    for module in CONTENDER_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing[module] = str(exc)
    return missing


def run_bench(names: Sequence[str], ctx: BenchContext, repeat: int = 1) -> list[BenchResult]:
    results = []
    for name in names:
        contender = CONTENDERS[name]
        best: BenchResult | None = None
        for _ in range(repeat):
            try:
                result = contender.run(ctx)
            except Exception as exc:  # report, go on with the others
                result = BenchResult(name, 0, 0.0, skipped=f"{type(exc).__name__}: {exc}")
            if result.skipped or best is None or result.events_per_second > best.events_per_second:
                best = result
            if result.skipped:
                break
        assert best is not None
        results.append(best)
    return results


def format_results(results: list[BenchResult], reference: str | None) -> str:
    ref = next((r for r in results if r.name == reference and not r.skipped), None)
    if ref is None:
        ref = next((r for r in results if not r.skipped), None)
    lines = [
        f"{'contender':<14} {'events':>10} {'seconds':>9} {'events/s':>12} {'ev/CPU-s':>12}  "
        f"ratio to {ref.name if ref else '-'}"
    ]
    for r in results:
        if r.skipped:
            lines.append(f"{r.name:<14} skipped: {r.skipped}")
            continue
        ratio = r.events_per_second / ref.events_per_second if ref and ref.events_per_second else 0.0
        per_cpu = f"{r.events / r.cpu_seconds:>12,.0f}" if r.cpu_seconds else f"{'-':>12}"
        lines.append(
            f"{r.name:<14} {r.events:>10} {r.seconds:>9.3f} {r.events_per_second:>12,.0f} {per_cpu}  {ratio:.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    rp = Parser(prog="python -m jobs.bench.replay", description=__doc__.split("\n\n")[0])
    rp.add_argument("--events", type=Path, help="events file (default: a synthetic one in .bench/)")
    rp.add_argument("--events-count", type=int, default=200_000, help="size of the synthetic file")
    rp.add_argument("--seed", type=int, default=7)
    rp.add_argument("--contender", action="append", help="run only these (repeatable); 'list' lists them")
    rp.add_argument("--reference", default="flink-sql", help="ratios are to this contender (default flink-sql)")
    rp.add_argument("--repeat", type=int, default=1, help="best of N runs per contender")
    rp.add_argument("--parallelism", type=int, default=1)
    rp.add_argument("--json", action="store_true", help="print the results as JSON")
    args = rp.parse_args(argv)

    missing = _load_contender_modules()
    if args.contender == ["list"]:
        for c in CONTENDERS.values():
            print(f"{c.name:<14} {'(default) ' if c.default else ''}{c.description}")
        return 0
    names = args.contender or [c.name for c in CONTENDERS.values() if c.default]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        print(f"jobs.bench.replay: error: unknown contender(s) {unknown}; known: {sorted(CONTENDERS)}", file=sys.stderr)
        return 2
    join = JoinConfig(tasks=(TaskConfig(name="click"),))
    if args.events:
        events = args.events
        if not events.is_file():
            print(f"jobs.bench.replay: error: events file {events} does not exist", file=sys.stderr)
            return 2
        with open(events, "rb") as f:
            count = sum(1 for _ in f)
    else:
        events = BENCH_DIR / f"synth-{args.events_count}-{args.seed}.jsonl"
        if events.exists():
            with open(events, "rb") as f:
                count = sum(1 for _ in f)
        else:
            count = write_synth_events(events, args.events_count, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-", dir=BENCH_DIR if BENCH_DIR.exists() else None) as tmp:
        ctx = BenchContext(events, count, join, Path(tmp), args.parallelism)
        results = run_bench(names, ctx, args.repeat)
    if args.json:
        print(
            json.dumps(
                {
                    "events_file": str(events),
                    "events": count,
                    "results": [
                        {
                            "name": r.name,
                            "events": r.events,
                            "seconds": r.seconds,
                            "events_per_second": r.events_per_second,
                            "cpu_seconds": r.cpu_seconds,
                            "detail": r.detail,
                            "skipped": r.skipped,
                        }
                        for r in results
                    ],
                    "unavailable_modules": missing,
                }
            )
        )
    else:
        print(f"events file: {events} ({count} lines)")
        print(format_results(results, args.reference))
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this script copy's: contenders register into jobs.bench.replay.
    sys.exit(importlib.import_module("jobs.bench.replay").main())
