"""The demo's live view: one rich panel built from the two Prometheus endpoints, refreshed each second.

Every refresh also appends a point to the progress series that the report plots (progressive AUC
and bias of the sidecar over wall time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from infra.demo.scrape import Scrape, by_label, scrape, total, value

EVENT_TOPICS = ("events.impressions", "events.feature_snapshots", "events.labels")
ATTRIBUTIONS = ("POSITIVE", "NEGATIVE", "LATE_POSITIVE")


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


@dataclass
class Snapshot:
    """What one refresh read from the join runtime and the sidecar."""

    wall_s: float
    join: Scrape
    trainer: Scrape

    def join_watermark_ms(self) -> float | None:
        """The lowest input watermark (the one that resolves impressions)."""
        marks = [v for v in self.join.get("sample_join_watermark_ms", {}).values() if v > 0]
        return min(marks) if marks else None

    def point(self) -> dict[str, Any]:
        t = self.trainer
        return {
            "wall_s": round(self.wall_s, 2),
            "watermark_ms": self.join_watermark_ms(),
            "samples_trained": total(t, "trainer_samples_trained_total"),
            "loss": value(t, "trainer_loss"),
            "progressive_auc": value(t, "trainer_progressive_auc"),
            "progressive_bias": value(t, "trainer_progressive_prediction_bias"),
            "published": total(t, "trainer_publishes_total"),
            "refused": total(t, "trainer_refusals_total"),
            "current_version": value(t, "trainer_current_version"),
        }


@dataclass
class LiveView:
    join_port: int
    trainer_port: int
    started: float = field(default_factory=time.monotonic)
    series: list[dict[str, Any]] = field(default_factory=list)
    last: Snapshot | None = None
    phase: str = "starting"
    note: str = ""  # one line under the header: what the sidecars started from

    def refresh(self) -> Snapshot:
        snap = Snapshot(time.monotonic() - self.started, scrape(self.join_port), scrape(self.trainer_port))
        if snap.trainer:
            self.series.append(snap.point())
        self.last = snap
        return snap

    def render(self, start_ms: int) -> Group:
        snap = self.last or Snapshot(0.0, {}, {})
        j, t = snap.join, snap.trainer
        watermark = snap.join_watermark_ms()
        event_clock = "-" if watermark is None else f"{(watermark - start_ms) / 3_600_000:5.2f} h"

        join = Table.grid(padding=(0, 2))
        join.add_column(style="bold")
        join.add_column(justify="right")
        events = by_label(j, "sample_join_events_in_total", "topic")
        for topic in EVENT_TOPICS:
            join.add_row(f"in {topic}", _fmt(events.get(topic)))
        samples = by_label(j, "sample_join_samples_out_total", "attribution")
        for attribution in ATTRIBUTIONS:
            join.add_row(f"out {attribution}", _fmt(samples.get(attribution)))
        join.add_row("unmatched", _fmt(total(j, "sample_join_unmatched_total")))
        join.add_row("dead-lettered", _fmt(total(j, "sample_join_deadlettered_total")))
        join.add_row("event clock (watermark)", event_clock)
        join.add_row("watermark lag", _fmt(value(j, "sample_join_watermark_lag_seconds"), ".1f") + " s")

        trainer = Table.grid(padding=(0, 2))
        trainer.add_column(style="bold")
        trainer.add_column(justify="right")
        trainer.add_row("samples trained", _fmt(total(t, "trainer_samples_trained_total")))
        trainer.add_row("steps", _fmt(total(t, "trainer_steps_total")))
        trainer.add_row("loss", _fmt(value(t, "trainer_loss"), ".4f"))
        trainer.add_row("progressive AUC", _fmt(value(t, "trainer_progressive_auc"), ".4f"))
        trainer.add_row("progressive bias", _fmt(value(t, "trainer_progressive_prediction_bias"), ".3f"))
        trainer.add_row("versions published", _fmt(total(t, "trainer_publishes_total")))
        trainer.add_row("versions refused", _fmt(total(t, "trainer_refusals_total")))
        trainer.add_row("current version", _fmt(value(t, "trainer_current_version")))
        trainer.add_row("consumer lag", _fmt(total(t, "trainer_consumer_lag")))

        grid = Table.grid(expand=True)
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(Panel(join, title="sample join (embedded runtime)"), Panel(trainer, title="trainer sidecar"))
        header = f"[bold]odl-loop demo[/]  {snap.wall_s:5.0f} s  ·  {self.phase}"
        return Group(header, self.note, grid) if self.note else Group(header, grid)

    def line(self, start_ms: int) -> str:
        """The same, as one log line (when the console is not a terminal)."""
        snap = self.last or Snapshot(0.0, {}, {})
        watermark = snap.join_watermark_ms()
        p = snap.point()
        clock = "-" if watermark is None else f"{(watermark - start_ms) / 3_600_000:.2f} h"
        return (
            f"[{snap.wall_s:5.0f} s] {self.phase}: events in {total(snap.join, 'sample_join_events_in_total'):,.0f}, "
            f"samples out {total(snap.join, 'sample_join_samples_out_total'):,.0f}, event clock {clock}; "
            f"trained {p['samples_trained']:,.0f}, AUC {_fmt(p['progressive_auc'], '.3f')}, "
            f"bias {_fmt(p['progressive_bias'], '.2f')}, published {p['published']:.0f}, refused {p['refused']:.0f}"
        )
