"""The ``flink`` contender of ``python -m jobs.bench.replay``: ``replay --engine flink`` on the file.

Timing: the Flink job's net run time (Flink's JobExecutionResult: from the job's start to its end,
without the MiniCluster's start-up and the job submission), as for the ``flink-sql`` peer, so that
the ratio compares the jobs themselves; the wall time of ``env.execute`` and of the whole call (JVM
gateway start, graph building, collecting the part files) are in ``detail``. The events/s per slot
are the events/s over the parallelism.
"""

from __future__ import annotations

import time

from jobs.bench.replay import BenchContext, BenchResult, register


@register(
    "flink", description="replay --engine flink: FileSource, PyFlink thread mode, keyed join (per slot)"
)
def bench_flink(ctx: BenchContext) -> BenchResult:
    from jobs.runtime.flink.replay import run_replay

    p = max(1, ctx.parallelism)
    started = time.perf_counter()
    summary = run_replay(
        ctx.events,
        ctx.workdir / "flink.samples.jsonl",
        ctx.workdir / "flink.unmatched.jsonl",
        ctx.workdir / "flink.deadletter.jsonl",
        ctx.join,
        p,
    )
    total = time.perf_counter() - started
    net = float(summary.extra.get("job_net_seconds", summary.seconds))
    return BenchResult(
        "flink",
        summary.events_read,
        net,
        {
            "parallelism": p,
            "events_per_second_per_slot": round(summary.events_read / net / p, 1) if net else 0.0,
            "execute_seconds": summary.extra.get("job_seconds"),
            "whole_call_seconds": round(total, 3),
            "samples": summary.total_samples,
            "unmatched": summary.total_unmatched,
            "timing": "job net run time",
        },
    )
