"""Candidate versions through the gate into the registry, the current version, and rollbacks.

A :class:`Publisher` owns the version directories, the registry and the loaded current version (the
model that scores each batch before training, for the gate's reference and the live check). Every
record and pointer change goes to disk before Redis (:class:`~trainer.sidecar.registry.Registry`).
With ``sidecar.delta`` on, versions between full exports carry a delta too (:mod:`trainer.delta`);
a delta that does not apply is refused like any bad version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.config import SidecarConfig
from trainer.delta import DeltaExports
from trainer.sidecar.errors import ExportFailed
from trainer.sidecar.gate import judge
from trainer.sidecar.metrics import SidecarMetrics
from trainer.sidecar.registry import PUBLISHED, REFUSED, ROLLED_BACK, Registry
from trainer.sidecar.rollback import DATA, LiveMonitor, data_reasons
from trainer.sidecar.scores import ScoreLog
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
        self.deltas = DeltaExports(store.model_dir, config.delta.enabled, config.delta.full_every)
        self.scores = ScoreLog(config.gate)
        self.monitor = LiveMonitor(config.rollback, config.gate.confidence)
        self.current: int | None = None
        self.current_model: ExportedModel | None = None
        self.current_record: dict[str, Any] | None = None
        self._previous_good: dict[str, Any] | None = None
        self._blocks_seen = 0

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
        self.current_record = None
        if pointer is not None:
            record = self.current_record = self.registry.version(pointer)
            self._previous_good = self.registry.previous_good(pointer)
            # Armed once per published version; not for a version a rollback returned to.
            if record is not None and record.get("status") == PUBLISHED and not record.get("restored_by_rollback"):
                self.monitor.arm(pointer, int(record.get("samples_trained") or 0))
            else:
                self.monitor.disarm()

    def _load_current(self, version: int | None) -> None:
        from trainer.errors import ModelDirError
        from trainer.export import ExportedModel

        self.current, self.current_model = version, None
        self.metrics.current_version.set(version or 0)
        if version is None:
            return
        try:
            self.current_model = ExportedModel(self.store.path(version))
        except ModelDirError as exc:
            log.warning("cannot load the current version; the gate compares without it", extra={"error": str(exc)})

    def score_current(self, table: SampleTable) -> np.ndarray | None:
        return None if self.current_model is None else self.current_model.predict(table)

    def record_scores(self, table: SampleTable, progressive: np.ndarray, current: np.ndarray | None,
                      samples_before: int) -> None:
        """A trained batch's scores into the gate's evidence and the stream statistics."""
        self.scores.add(table, progressive, current, self.current, samples_before)

    def _references(self, evidence: dict[str, np.ndarray]) -> set[int]:
        """The versions whose scores in ``evidence`` may serve as the reference: every version that
        scored (it was current, so published) but one rolled back since, as its record on disk says (a
        version pruned by retention has none left: it stays). The disk, not Redis: a candidate's record
        is written before Redis is asked anything."""
        out = set()
        for number in (int(v) for v in np.unique(evidence["version"]) if v):
            record = self.store.read_record(number)
            if record is None or record.get("status") != ROLLED_BACK:
                out.add(number)
        return out

    def _since(self) -> int:
        """Samples the current version was trained on (what a candidate's data is new beyond)."""
        return int((self.current_record or {}).get("samples_trained") or 0)

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
            written = self.store.export(state, candidate.version, self.deltas)
        except ExportFailed as exc:
            self.metrics.export_failures.inc()
            log.error("export failed; version %s stays current", self.current, extra={"error": str(exc)})
            return None
        self.metrics.exports.inc()
        gate, scores = self.config.gate, self.scores
        evidence = scores.matured(gate.evidence)
        decision = judge(evidence, gate.thresholds, gate.confidence, gate.min_samples, self._references(evidence))
        data = scores.stats.check(self._since(), (self.current_record or {}).get("data_reference"))
        reasons = [*decision["reasons"], *data_reasons(data)]
        if written.refused is not None:
            reasons.insert(0, f"the delta does not apply: {written.refused}")
        record = {
            "version": candidate.version,
            "status": REFUSED if reasons else PUBLISHED,
            "metrics": decision["metrics"],
            "reference_version": self.current,
            "reference_versions": decision.get("reference_versions", {}),
            "reference_metrics": decision["reference_metrics"],
            "tests": decision["tests"],
            "evidence": {"impressions": decision["evidence"], "paired": decision.get("paired", 0),
                         "maturity_ms": gate.maturity, "confidence": gate.confidence,
                         "late_unmatched": scores.evidence.late_unmatched},
            "data_checks": data,
            "data_reference": scores.stats.reference(candidate.samples_trained),
            "reasons": reasons,
            "samples_trained": candidate.samples_trained,
            "stream_ms": scores.stream_ms,
            "offsets": {str(p): o for p, o in sorted(candidate.offsets.items())},
            "step": state.step,
            "path": str(written.path),
            **written.record(),
        }
        if written.refused is not None:
            self.registry.add(record)
            self.metrics.refusals.inc()
            self.metrics.delta_failures.inc()
            log.warning("delta version refused: it does not apply; the next version is a full export",
                        extra={"version": candidate.version, "reason": written.refused})
        elif reasons:
            self.registry.add(record)
            self.metrics.refusals.inc()
            log.warning("version refused by the gate", extra={"version": candidate.version, "reasons": reasons})
        else:
            self.registry.publish(record)
            self.metrics.publishes.inc()
            log.info("version published", extra={"version": candidate.version, "metrics": decision["metrics"]})
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
        """After each trained batch: the served lag, and the rollback's evaluation windows (a model
        window per ``rollback.window`` matured impressions the current version scored, a data window
        per block of stream statistics); the current version rolled back when a breach persisted. The
        notice, or None."""
        self._served_lag()
        if not self.monitor.armed or self.current is None:
            return None
        self.monitor.model_window(self.scores.evidence, self.config.gate.maturity)
        if self.scores.stats.closed != self._blocks_seen:
            self._blocks_seen = self.scores.stats.closed
            reference = (self.current_record or {}).get("data_reference")
            self.monitor.data_window(self.scores.stats.check(self._since(), reference))
        due = self.monitor.due()
        if due is None:
            return None
        target = self._rollback_target(due)
        left = self.current
        if target is None:
            log.warning("the current version breached, but no published version before it is left to roll back to",
                        extra={"version": left, "reasons": due["reasons"]})
            self.monitor.disarm()
            return None
        record = self.registry.version(left)
        if record is not None:
            self.registry.add({**record, "rollback": due})
        self.registry.add({**target, "restored_by_rollback": True})
        what = "data it was trained on failed the data checks" if due["kind"] == DATA else "its floors broke"
        notice = self.registry.rollback(
            to=int(target["version"]),
            reason=f"{what} in {due['windows']} consecutive windows: " + "; ".join(due["reasons"][:3]),
        )
        self.metrics.rollbacks.inc()
        log.warning("rolled back", extra={"from": left, "to": int(target["version"]), "reasons": due["reasons"]})
        self.sync_current()
        return notice

    def _rollback_target(self, due: dict[str, Any]) -> dict[str, Any] | None:
        """The newest published version before the current one (trained before the suspect data, for
        a data breach) that is still on disk."""
        assert self.current is not None
        limit = due.get("suspect_from")
        for record in reversed(self.registry.versions()):
            number = int(record["version"])
            if number >= self.current or record.get("status") != PUBLISHED:
                continue
            if limit is not None and int(record.get("samples_trained") or 0) > limit:
                continue
            if self.store.path(number).is_dir():
                return record
        return None

    def _served_lag(self) -> None:
        """How far behind the training the served version is: samples and seconds of stream time."""
        record, scores = self.current_record or {}, self.scores
        trained = scores.stats.trained
        self.metrics.served_lag_samples.set(trained - int(record.get("samples_trained") or 0))
        now, then = scores.stream_ms, record.get("stream_ms")
        if now is not None and then is not None:
            self.metrics.served_lag_seconds.set(max(0.0, (now - int(then)) / 1000.0))
