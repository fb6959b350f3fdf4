"""Mini-batches in arrival order, closed by size or by the wait of their first sample.

A batch also carries the input positions of every message consumed since the previous batch
(dead-lettered and duplicate ones included), so training a batch is what advances the offsets that
the next checkpoint records. And, when the poller prepared its samples' features ahead
(:class:`trainer.sidecar.consume.Prefetcher`), where they are: runs of rows of the poller's tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from trainer.samples import Sample, SampleTable

if TYPE_CHECKING:
    from trainer.features import FeatureSpec, PreparedTable


class Consumed(Protocol):
    """A consumed message as the batcher reads it (:class:`trainer.sidecar.consume.Decoded`)."""

    partition: int
    offset: int
    prepared: tuple[PreparedTable, int] | None  # the poller's table and row of its features, if prepared


@dataclass(slots=True)
class Run:
    """Consecutive samples of a batch whose features are rows ``[start, end)`` of ``prepared``."""

    prepared: PreparedTable
    start: int
    end: int


@dataclass
class Batch:
    samples: list[Sample] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)  # each sample's input partition
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

    def fill(self, messages: Sequence[Consumed], samples: Sequence[Sample | None], start: int, now: float) -> int:
        """Record ``messages[start:]`` until the open batch holds ``size`` samples; returns the index of
        the first message not taken. ``samples[i]`` is ``messages[i]``'s sample to train, or None for
        one that is not trained (bad, repeat). One call per poll, not per message: this runs beside
        the poller, whose Python waits for the GIL."""
        batch = self._open
        positions, taken, runs = batch.positions, batch.samples, batch.runs
        room = self.size - len(taken)
        end = start
        while end < len(messages) and room > 0:
            message, sample = messages[end], samples[end]
            end += 1
            positions[message.partition] = message.offset + 1
            if sample is None:
                continue
            room -= 1
            if self._first_at is None:
                self._first_at = now
            taken.append(sample)
            batch.partitions.append(message.partition)
            prepared = message.prepared
            if prepared is None:
                batch.all_prepared = False
            elif batch.all_prepared:
                table, row = prepared
                last = runs[-1] if runs else None
                if last is not None and last.prepared is table and last.end == row:
                    last.end = row + 1
                else:
                    runs.append(Run(table, row, row + 1))
        return end

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
