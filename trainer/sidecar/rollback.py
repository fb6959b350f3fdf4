"""Automatic rollback: the current version's live metrics against the previous good version's.

Once the current version has scored ``min_samples`` new samples, its metrics on them are checked
with :func:`~trainer.sidecar.gate.violations` against the previous good version's published
metrics. A breach moves the pointer back to that version. It fires at most once per published
version: rolling back further on data no version explains would not help (the monitor re-arms when
a new version is published).
"""

from __future__ import annotations

from typing import Any

from trainer.sidecar.config import RollbackConfig
from trainer.sidecar.gate import violations
from trainer.sidecar.scores import ScoreWindow


class LiveMonitor:
    def __init__(self, config: RollbackConfig):
        self.config = config
        self.armed = False

    def arm(self) -> None:
        self.armed = self.config.enabled

    def disarm(self) -> None:
        self.armed = False

    def check(
        self, window: ScoreWindow, previous_good: dict[str, Any] | None
    ) -> tuple[dict[str, Any], list[str]] | None:
        """(live metrics, reasons) when the current version should be rolled back, else None."""
        if not self.armed or previous_good is None:
            return None
        n = min(window.current_scored, len(window))
        if n < self.config.min_samples:
            return None
        live = window.current_metrics(n)
        if live is None:
            return None
        reasons = violations(live, previous_good.get("metrics"), self.config.thresholds)
        return (live, reasons) if reasons else None
