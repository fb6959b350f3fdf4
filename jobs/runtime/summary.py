"""What a run of the join did: the replay engines' summary (printed by the CLI, human to stderr, JSON on
demand) and the embedded runtime's totals and run summary (logged when it stops)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.records import ATTRIBUTIONS as ATTRIBUTION_ORDER
from schemas.records import UNMATCHED_REASONS as REASON_ORDER


@dataclass(slots=True)
class ReplaySummary:
    """Counts of one replay run.

    ``samples[task][attribution]``, ``unmatched[reason]``, ``ignored_label_types[label_type]``;
    ``deadlettered`` bad input lines; ``events_read`` valid events processed; ``lines_read`` all
    non-blank input lines; ``over_cap`` events the per-request state caps turned away, by kind;
    ``seconds`` wall time of the whole run.
    """

    engine: str = "local"
    samples: dict[str, dict[str, int]] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)
    ignored_label_types: dict[str, int] = field(default_factory=dict)
    deadlettered: int = 0
    events_read: int = 0
    lines_read: int = 0
    over_cap: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # engine-specific figures (parallelism, …)

    # -- accumulation --------------------------------------------------------------------------
    def add_sample(self, task: str, attribution: str, n: int = 1) -> None:
        per_task = self.samples.setdefault(task, {})
        per_task[attribution] = per_task.get(attribution, 0) + n

    def add_unmatched(self, reason: str, n: int = 1) -> None:
        self.unmatched[reason] = self.unmatched.get(reason, 0) + n

    def add_ignored(self, label_types: Iterable[str] | Mapping[str, int]) -> None:
        counts = label_types if isinstance(label_types, Mapping) else Counter(label_types)
        for lt, n in counts.items():
            self.ignored_label_types[lt] = self.ignored_label_types.get(lt, 0) + n

    def ensure_tasks(self, tasks: Iterable[str]) -> None:
        """List every configured task (with zero counts) even if it produced nothing."""
        for task in tasks:
            per_task = self.samples.setdefault(task, {})
            for a in ATTRIBUTION_ORDER:
                per_task.setdefault(a, 0)

    # -- derived -------------------------------------------------------------------------------
    @property
    def total_samples(self) -> int:
        return sum(sum(v.values()) for v in self.samples.values())

    @property
    def total_unmatched(self) -> int:
        return sum(self.unmatched.values())

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds > 0 else 0.0

    # -- output --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "samples": {t: dict(v) for t, v in self.samples.items()},
            "total_samples": self.total_samples,
            "unmatched": dict(self.unmatched),
            "total_unmatched": self.total_unmatched,
            "ignored_label_types": dict(self.ignored_label_types),
            "deadlettered": self.deadlettered,
            "events_read": self.events_read,
            "lines_read": self.lines_read,
            **({"over_cap": dict(self.over_cap)} if self.over_cap else {}),
            "seconds": round(self.seconds, 6),
            "events_per_second": round(self.events_per_second, 1),
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplaySummary:
        return cls(
            engine=data.get("engine", "local"),
            samples={t: dict(v) for t, v in data.get("samples", {}).items()},
            unmatched=dict(data.get("unmatched", {})),
            ignored_label_types=dict(data.get("ignored_label_types", {})),
            deadlettered=int(data.get("deadlettered", 0)),
            events_read=int(data.get("events_read", 0)),
            lines_read=int(data.get("lines_read", 0)),
            over_cap=dict(data.get("over_cap", {})),
            seconds=float(data.get("seconds", 0.0)),
            extra=dict(data.get("extra", {})),
        )

    def format_human(self) -> str:
        lines = [
            f"replay ({self.engine}): {self.events_read} events in {self.seconds:.2f} s "
            f"({self.events_per_second:,.0f} events/s), {self.deadlettered} line(s) dead-lettered"
        ]
        for task in sorted(self.samples):
            counts = self.samples[task]
            names = [a for a in ATTRIBUTION_ORDER if a in counts] + sorted(
                a for a in counts if a not in ATTRIBUTION_ORDER
            )
            parts = ", ".join(f"{a} {counts[a]}" for a in names)
            lines.append(f"  samples[{task}]: {sum(counts.values())} ({parts})")
        reasons = [r for r in REASON_ORDER if r in self.unmatched] + sorted(
            r for r in self.unmatched if r not in REASON_ORDER
        )
        detail = ", ".join(f"{r} {self.unmatched[r]}" for r in reasons)
        lines.append(f"  unmatched: {self.total_unmatched}" + (f" ({detail})" if detail else ""))
        if self.ignored_label_types:
            detail = ", ".join(f"{lt} {n}" for lt, n in sorted(self.ignored_label_types.items()))
            lines.append(f"  ignored label types: {detail}")
        else:
            lines.append("  ignored label types: none")
        if self.over_cap:
            detail = ", ".join(f"{kind} {n}" for kind, n in sorted(self.over_cap.items()))
            lines.append(f"  turned away by the per-request state caps: {detail}")
        return "\n".join(lines)


@dataclass
class Totals:
    """Totals over the process's life (for the final log line and the benchmark)."""

    events_in: int = 0
    samples_out: int = 0
    unmatched: int = 0
    deadletter: int = 0
    ignored: int = 0
    checkpoints: int = 0
    checkpoint_seconds: float = 0.0  # spent checkpointing (flush + state + Redis), all together
    by_attribution: Counter[str] = field(default_factory=Counter)


@dataclass
class RunSummary(Totals):
    """What the embedded runtime did, returned by its run and logged when it stops: its totals, then timing."""

    state_bytes_per_pending_impression: float | None = None
    seconds: float = 0.0
    active_seconds: float = 0.0  # from the first input record to the last one processed
    active_cpu_seconds: float = 0.0  # this process's CPU time (all threads) over that span
    finished_input: bool = False
    over_cap: dict[str, int] = field(default_factory=dict)  # what the per-request state caps turned away

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "by_attribution": dict(self.by_attribution)}

    @classmethod
    def of(cls, t: Totals, **timing: Any) -> RunSummary:
        """The summary of a run from a copy of its totals, plus its timing and state figures."""
        counts = {**vars(t), "checkpoint_seconds": round(t.checkpoint_seconds, 3),
                  "by_attribution": Counter(t.by_attribution)}
        return cls(**counts, **timing)
