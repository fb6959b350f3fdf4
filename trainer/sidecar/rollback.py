"""Automatic rollback: the current version is moved back only on a breach that persists.

Two kinds of evaluation window, each with its own count of consecutive breaches:

* **model**: every ``rollback.window`` newly matured impressions the current version scored (when they
  arrived), its floors (:func:`~trainer.sidecar.gate.floor_tests`) on them; a breach is a floor broken
  with its whole interval;
* **data**: every block of the stream statistics closed, the data checks of the samples since the
  current version's reference (:meth:`~trainer.sidecar.data_checks.StreamStats.check`); a breach is a
  failure whose suspect span begins before the current version's last sample (data the current version
  was trained on). A current version trained before the suspect span is not to blame and stays.

``rollback.consecutive`` breaches in a row of one kind trigger it; a window that passes resets that
kind's count. It fires at most once per published version (re-armed when a new one is published).
No second version scores the same impressions, so there is no paired test here: a current version no
worse than its floors stays until the gate publishes a better one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.config import RollbackConfig
from trainer.sidecar.gate import floor_tests

if TYPE_CHECKING:
    from trainer.sidecar.evidence import Evidence

MODEL, DATA = "model", "data"


class LiveMonitor:
    def __init__(self, config: RollbackConfig, confidence: float):
        self.config = config
        self.confidence = confidence
        self.version: int | None = None  # the armed version
        self.trained_until = 0  # its samples_trained
        self.streaks = {MODEL: 0, DATA: 0}
        self.windows: list[dict[str, Any]] = []  # the current streak's breaches
        self._evaluated_arrival = -1  # the model windows' cursor (arrival index)

    @property
    def armed(self) -> bool:
        return self.version is not None

    def arm(self, version: int, trained_until: int) -> None:
        if not self.config.enabled:
            return
        self.version, self.trained_until = version, trained_until
        self.streaks = {MODEL: 0, DATA: 0}
        self.windows = []
        self._evaluated_arrival = -1

    def disarm(self) -> None:
        self.version = None

    def model_window(self, evidence: Evidence, maturity_ms: int) -> dict[str, Any] | None:
        """Evaluate the next model window if ``window`` new matured impressions scored by the armed
        version are there; the window's result, or None."""
        if self.version is None:
            return None
        slots = evidence.matured(maturity_ms)
        cols = evidence.columns
        slots = slots[(cols["version"][slots] == self.version) & (cols["arrival"][slots] > self._evaluated_arrival)]
        if slots.size < self.config.window:
            return None
        slots = slots[-self.config.window :]
        self._evaluated_arrival = int(cols["arrival"][slots].max())
        labels = cols["label"][slots].astype(np.float64)
        tests, reasons = floor_tests(labels, cols["current"][slots].astype(np.float64), self.config.floors,
                                     self.confidence)
        return self._count(MODEL, {"kind": MODEL, "impressions": int(slots.size), "tests": tests, "reasons": reasons})

    def data_window(self, verdict: dict[str, Any]) -> dict[str, Any] | None:
        """Count one data window (a closed block's data checks since the current version's reference)."""
        if self.version is None:
            return None
        suspect = verdict.get("suspect_from")
        blamed = suspect is not None and suspect < self.trained_until
        reasons = [_failure_line(f) for f in verdict["failures"]] if blamed else []
        return self._count(DATA, {"kind": DATA, "suspect_from": suspect, "reasons": reasons})

    def _count(self, kind: str, window: dict[str, Any]) -> dict[str, Any]:
        if window["reasons"]:
            self.streaks[kind] += 1
            self.windows = [*self.windows, window][-self.config.consecutive * 2 :]
        else:
            self.streaks[kind] = 0
        window["streak"] = self.streaks[kind]
        return window

    def due(self) -> dict[str, Any] | None:
        """The breach that persisted (kind, reasons, the windows, where bad data begins), or None."""
        if self.version is None:
            return None
        for kind in (DATA, MODEL):
            if self.streaks[kind] >= self.config.consecutive:
                windows = [w for w in self.windows if w["kind"] == kind][-self.config.consecutive :]
                return {
                    "kind": kind,
                    "reasons": windows[-1]["reasons"],
                    "windows": len(windows),
                    "suspect_from": windows[0].get("suspect_from") if kind == DATA else None,
                }
        return None


def _failure_line(failure: dict[str, Any]) -> str:
    """One data-check failure as a reason line."""
    what = failure["check"] + (f" of {failure['feature']}" if failure.get("feature") else "")
    return (
        f"data: {what} {failure['value']:.4g} against {failure['reference']:.4g} (tolerance {failure['tolerance']:g}, "
        f"p={failure['p_value']:.2g}) from sample {failure['start']}"
    )


def data_reasons(verdict: dict[str, Any]) -> list[str]:
    return [_failure_line(f) for f in verdict.get("failures", [])]
