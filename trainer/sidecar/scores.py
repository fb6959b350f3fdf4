"""What every trained batch leaves for the gate and the rollback, saved with each checkpoint.

Every batch is scored before it is trained on, by the training state (progressive validation: the
train step's own forward pass, before its update) and by the current published version. A
:class:`ScoreLog` folds the batch into the matured-impression evidence
(:class:`~trainer.sidecar.evidence.Evidence`) and the stream statistics
(:class:`~trainer.sidecar.data_checks.StreamStats`); :meth:`ScoreLog.to_arrays` is what the checkpoint
writes, so a restart resumes the gate with its evidence, the scores of the versions then current
included.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer import metrics
from trainer.config import GateConfig
from trainer.sidecar.data_checks import Block, StreamStats
from trainer.sidecar.evidence import Evidence

if TYPE_CHECKING:
    from trainer.samples import SampleTable


class ScoreLog:
    def __init__(self, gate: GateConfig):
        self.gate = gate
        self.evidence = Evidence(gate.capacity, gate.sample_share)
        self.stats = StreamStats(gate.data)

    def add(self, table: SampleTable, progressive: np.ndarray, current: np.ndarray | None, version: int | None,
            first_index: int) -> list[Block]:
        """Fold a trained batch in (``first_index``: distinct samples trained before it); the blocks of
        stream statistics it closed."""
        times = table.times
        self.evidence.add(table.samples, times, progressive, current, version if current is not None else None,
                          first_index)
        return self.stats.add(table.samples, times, progressive, first_index)

    def matured(self, last: int | None = None) -> dict[str, np.ndarray]:
        """The columns of the last ``last`` matured impressions past the warm-up (all by default)."""
        slots = self.evidence.matured(self.gate.maturity)
        slots = slots[self.evidence.columns["arrival"][slots] >= self.gate.warmup]
        return self.evidence.take(slots if last is None else slots[-last:])

    def progressive_metrics(self) -> dict[str, Any]:
        """The training model's progressive metrics on the evidence a gate would read now."""
        view = self.matured(self.gate.evidence)
        return metrics.evaluate(view["label"], view["progressive"]) if view["label"].size else {}

    @property
    def stream_ms(self) -> int | None:
        """The stream's time (largest emit time seen), None before any."""
        return None if self.evidence.stream_ms < 0 else self.evidence.stream_ms

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**self.evidence.to_arrays(), "stats": np.array(json.dumps(self.stats.to_json()))}

    def restore(self, arrays: Any) -> None:
        """What :meth:`to_arrays` saved; a file of an older layout (no evidence) leaves it empty."""
        if "evidence_ids" not in arrays:
            return
        self.evidence.restore(arrays)
        self.stats.restore(json.loads(str(arrays["stats"])))
