"""Mini-batches in arrival order, closed by size or by the wait of their first sample.

A batch also carries the input positions of every message consumed since the previous batch
(dead-lettered and duplicate ones included), so training a batch is what advances the offsets that
the next checkpoint records. And, when the poller prepared its samples' features ahead
(:class:`trainer.sidecar.consume.Prefetcher`), where they are: runs of rows of the poller's tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trainer.samples import Sample, SampleTable

if TYPE_CHECKING:
    from trainer.features import FeatureSpec, PreparedTable


@dataclass(slots=True)
class Run:
    """Consecutive samples of a batch whose features are rows ``[start, end)`` of ``prepared``."""

    prepared: PreparedTable
    start: int
    end: int


@dataclass
class Batch:
    samples: list[Sample] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read
    runs: list[Run] = field(default_factory=list)
    all_prepared: bool = True

    def __len__(self) -> int:
        return len(self.samples)

    def prepared(self, table: SampleTable, spec: FeatureSpec) -> PreparedTable | None:
        """``table`` (this batch's samples) prepared from the rows prepared ahead, if all of them were,
        for ``spec``; else None (then the trainer prepares it)."""
        if not self.samples or not self.all_prepared:
            return None
        if any(run.prepared.spec != spec for run in self.runs):
            return None
        from trainer.features import PreparedTable

        return PreparedTable.join(table, [(run.prepared, run.start, run.end) for run in self.runs])


class Batcher:
    def __init__(self, size: int, max_wait_s: float):
        self.size = size
        self.max_wait_s = max_wait_s
        self._open = Batch()
        self._first_at: float | None = None

    def add(
        self,
        sample: Sample | None,
        partition: int,
        offset: int,
        now: float,
        prepared: tuple[PreparedTable, int] | None = None,
    ) -> None:
        """Record a consumed message; ``sample`` is None for one that is not trained (bad, repeat).
        ``prepared``: the table and row where its features were prepared ahead, if they were."""
        batch = self._open
        batch.positions[partition] = offset + 1
        if sample is not None:
            if self._first_at is None:
                self._first_at = now
            batch.samples.append(sample)
            if prepared is None:
                batch.all_prepared = False
            elif batch.all_prepared:
                table, row = prepared
                last = batch.runs[-1] if batch.runs else None
                if last is not None and last.prepared is table and last.end == row:
                    last.end = row + 1
                else:
                    batch.runs.append(Run(table, row, row + 1))

    def ready(self, now: float) -> bool:
        if len(self._open) >= self.size:
            return True
        return self._first_at is not None and now - self._first_at >= self.max_wait_s

    @property
    def pending(self) -> int:
        return len(self._open)

    @property
    def has_positions(self) -> bool:
        return bool(self._open.positions)

    def take(self) -> Batch:
        """The open batch (possibly without samples: then it only advances positions)."""
        batch, self._open, self._first_at = self._open, Batch(), None
        return batch
