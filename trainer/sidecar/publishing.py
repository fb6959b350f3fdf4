"""Candidate versions through the gate into the registry, the current version, and rollbacks.

A :class:`Publisher` owns the version directories, the registry and the loaded current version (the
model that scores each batch before training, for the gate's reference and the live check). Every
record and pointer change goes to disk before Redis (:class:`~trainer.sidecar.registry.Registry`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.sidecar.config import SidecarConfig
from trainer.sidecar.errors import ExportFailed
from trainer.sidecar.gate import violations
from trainer.sidecar.metrics import SidecarMetrics
from trainer.sidecar.registry import PUBLISHED, REFUSED, Registry
from trainer.sidecar.rollback import LiveMonitor
from trainer.sidecar.scores import ScoreWindow
from trainer.sidecar.versions import VersionStore

if TYPE_CHECKING:
    from trainer.export import ExportedModel
    from trainer.samples import SampleTable
    from trainer.state import TrainerState

log = logging.getLogger("trainer.sidecar")


@dataclass
class Candidate:
    version: int
    samples_trained: int
    offsets: dict[int, int]


class Publisher:
    def __init__(self, config: SidecarConfig, registry: Registry, store: VersionStore, metrics: SidecarMetrics):
        self.config = config
        self.registry = registry
        self.store = store
        self.metrics = metrics
        self.window = ScoreWindow(max(config.gate.slice, config.rollback.min_samples))
        self.monitor = LiveMonitor(config.rollback)
        self.current: int | None = None
        self.current_model: ExportedModel | None = None
        self._previous_good: dict[str, Any] | None = None

    # -- the current version -----------------------------------------------------------------------

    def sync_current(self) -> None:
        """Follow the registry's pointer (moved by `trainer rollback`, or by us before a restart); a
        registry that lost it while we run (flushed, failed over to an empty Redis) is restored from disk."""
        pointer = self.registry.current()
        if pointer is None and self.store.read_current() is not None:
            pointer = self.registry.restore_from_disk().current
        if pointer == self.current:
            return
        self._load_current(pointer)
        if pointer is not None:
            record = self.registry.version(pointer)
            self._previous_good = self.registry.previous_good(pointer)
            # Armed once per published version; not for a version a rollback returned to.
            if record is not None and record.get("status") == PUBLISHED and not record.get("restored_by_rollback"):
                self.monitor.arm()
            else:
                self.monitor.disarm()

    def _load_current(self, version: int | None) -> None:
        from trainer.errors import ModelDirError
        from trainer.export import ExportedModel

        self.current, self.current_model = version, None
        self.window.pointer_moved()
        self.metrics.current_version.set(version or 0)
        if version is None:
            return
        try:
            self.current_model = ExportedModel(self.store.path(version))
        except ModelDirError as exc:
            log.warning("cannot load the current version; the gate compares without it", extra={"error": str(exc)})

    def score_current(self, table: SampleTable) -> np.ndarray | None:
        return None if self.current_model is None else self.current_model.predict(table)

    # -- candidates --------------------------------------------------------------------------------

    def next_candidate(self, samples_trained: int, offsets: dict[int, int]) -> Candidate:
        registered = [int(r["version"]) for r in self.registry.versions()]
        return Candidate(self.store.next_version(registered), samples_trained, dict(offsets))

    def last_samples_trained(self) -> int | None:
        """``samples_trained`` of the newest judged version (an unjudged one has none)."""
        counts = [r["samples_trained"] for r in self.registry.versions() if r.get("samples_trained") is not None]
        return int(counts[-1]) if counts else None

    def export_and_gate(self, state: TrainerState, candidate: Candidate) -> dict[str, Any] | None:
        """Export ``candidate``, judge it, register it, publish it if it passes; the registry record,
        or None when the export failed (the current version stays)."""
        try:
            path = self.store.export(state, candidate.version)
        except ExportFailed as exc:
            self.metrics.export_failures.inc()
            log.error("export failed; version %s stays current", self.current, extra={"error": str(exc)})
            return None
        self.metrics.exports.inc()
        gate = self.config.gate
        n = min(len(self.window), gate.slice)
        reference = None
        if self.current_model is not None and self.window.current_scored >= gate.min_samples:
            n = min(n, self.window.current_scored)
            reference = self.window.current_metrics(n)
        if n < gate.min_samples:
            metrics: dict[str, Any] = {"count": n}
            reasons = [f"only {n} held-out samples scored (gate.min_samples is {gate.min_samples})"]
        else:
            metrics = self.window.candidate_metrics(n)
            reasons = violations(metrics, reference, gate.thresholds)
        record = {
            "version": candidate.version,
            "status": REFUSED if reasons else PUBLISHED,
            "metrics": metrics,
            "reference_version": self.current if reference is not None else None,
            "reference_metrics": reference,
            "reasons": reasons,
            "samples_trained": candidate.samples_trained,
            "offsets": {str(p): o for p, o in sorted(candidate.offsets.items())},
            "step": state.step,
            "path": str(path),
        }
        if reasons:
            self.registry.add(record)
            self.metrics.refusals.inc()
            log.warning("version refused by the gate", extra={"version": candidate.version, "reasons": reasons})
        else:
            self.registry.publish(record)
            self.metrics.publishes.inc()
            log.info("version published", extra={"version": candidate.version, "metrics": metrics})
            self.sync_current()
        self.store.prune(self.protected())
        return record

    def protected(self) -> set[int]:
        """What the retention rule never deletes: the current version and the last good one before it."""
        keep = {v for v in (self.current,) if v is not None}
        if self._previous_good is not None:
            keep.add(int(self._previous_good["version"]))
        return keep

    # -- automatic rollback ------------------------------------------------------------------------

    def check_live(self) -> dict[str, Any] | None:
        """Roll the current version back when its live metrics degraded; the notice, or None."""
        verdict = self.monitor.check(self.window, self._previous_good)
        if verdict is None or self.current is None or self._previous_good is None:
            return None
        live, reasons = verdict
        left, target = self.current, int(self._previous_good["version"])
        record = self.registry.version(left)
        if record is not None:
            self.registry.add({**record, "live_metrics": live})
        self.registry.add({**self._previous_good, "restored_by_rollback": True})
        notice = self.registry.rollback(to=target, reason="live metrics degraded: " + "; ".join(reasons))
        self.metrics.rollbacks.inc()
        log.warning("rolled back", extra={"from": left, "to": target, "reasons": reasons})
        self.sync_current()
        return notice
