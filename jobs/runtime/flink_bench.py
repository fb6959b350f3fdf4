"""The ``flink`` contender of ``python -m jobs.bench replay``: ``replay --engine flink`` on the file.

Timing: the Flink job's net run time (Flink's JobExecutionResult: from the job's start to its end,
without the MiniCluster's start-up and the job submission), as for the ``flink-sql`` peer, so that
the ratio compares the jobs themselves; the wall time of ``env.execute`` and of the whole call (JVM
gateway start, graph building, collecting the part files) are in ``detail``. The events/s per slot
are the events/s over the parallelism.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from jobs.bench import BenchContext, BenchResult, register


def register_contender(name: str, **kwargs: Any) -> Callable[[Any], Any]:
    """``jobs.bench.register``, also into ``__main__`` when the bench runs as ``python -m jobs.bench``
    (the script is then a second copy of the module, with its own registry)."""
    registries = [register]
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if main is not None and spec is not None and spec.name == "jobs.bench" and hasattr(main, "register"):
        registries.append(main.register)

    def deco(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        for reg in registries:
            reg(name, **kwargs)(fn)
        return fn

    return deco


@register_contender(
    "flink", description="replay --engine flink: FileSource, PyFlink thread mode, keyed join (per slot)"
)
def bench_flink(ctx: BenchContext) -> BenchResult:
    from jobs.runtime.flink_replay import run_replay

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
