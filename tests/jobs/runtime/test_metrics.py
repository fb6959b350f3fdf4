"""The embedded runtime's run summary: its totals come from the published counts, its JSON keeps one form."""

from __future__ import annotations

import json

from jobs.runtime.embedded.metrics import RuntimeMetrics
from jobs.runtime.summary import RunSummary


def test_the_summary_is_the_published_totals_plus_timing_in_a_fixed_json_form() -> None:
    metrics = RuntimeMetrics()
    metrics.counts.events_in["impressions"] += 5
    metrics.counts.samples_out[("click", "POSITIVE")] += 2
    metrics.counts.unmatched["late"] += 1
    metrics.counts.deadletter["labels"] += 3
    metrics.totals.checkpoints += 2
    metrics.totals.checkpoint_seconds += 0.123456
    metrics.publish()
    summary = RunSummary.of(metrics.totals, state_bytes_per_pending_impression=12.5, seconds=1.0,
                            active_seconds=0.5, active_cpu_seconds=0.4, finished_input=True, over_cap={"x": 1})
    metrics.counts.samples_out[("click", "POSITIVE")] += 7
    metrics.publish()  # later counts do not reach a summary already taken
    assert json.dumps(summary.to_json()) == json.dumps({
        "events_in": 5, "samples_out": 2, "unmatched": 1, "deadletter": 3, "ignored": 0, "checkpoints": 2,
        "checkpoint_seconds": 0.123, "by_attribution": {"POSITIVE": 2}, "state_bytes_per_pending_impression": 12.5,
        "seconds": 1.0, "active_seconds": 0.5, "active_cpu_seconds": 0.4, "finished_input": True,
        "over_cap": {"x": 1},
    })
