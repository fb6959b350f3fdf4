"""Mini-batches in arrival order, closed by size or by the wait of their first sample.

A batch also carries the input positions of every message consumed since the previous batch
(dead-lettered and duplicate ones included), so training a batch is what advances the offsets that
the next checkpoint records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.samples import Sample


@dataclass
class Batch:
    samples: list[Sample] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read

    def __len__(self) -> int:
        return len(self.samples)


class Batcher:
    def __init__(self, size: int, max_wait_s: float):
        self.size = size
        self.max_wait_s = max_wait_s
        self._open = Batch()
        self._first_at: float | None = None

    def add(self, sample: Sample | None, partition: int, offset: int, now: float) -> None:
        """Record a consumed message; ``sample`` is None for one that is not trained (bad, repeat)."""
        batch = self._open
        batch.positions[partition] = offset + 1
        if sample is not None:
            if self._first_at is None:
                self._first_at = now
            batch.samples.append(sample)

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
