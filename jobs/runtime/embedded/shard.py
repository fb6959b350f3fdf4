"""One shard of the embedded runtime: everything that belongs to one input partition number *p*.

The three event topics are co-partitioned by ``request_id``, so partition *p* of each topic carries
the same requests: a shard holds their join state and timers (a :class:`~jobs.core.keyed.KeyedRunner`),
*p*'s watermark over the three topics (:class:`~jobs.runtime.watermarks.PartitionWatermark`), the
offsets consumed, and what its checkpoint needs (dirty keys, state sizes). It does no I/O: outputs
collect in ``samples`` / ``unmatched`` until the runtime hands them to its Kafka sink.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from jobs.core.events import Event
from jobs.core.join import Sample, SampleJoin, UnmatchedLabel
from jobs.core.keyed import DictStore, KeyedRunner
from jobs.core.state import WATERMARK_END, WATERMARK_START
from jobs.runtime.embedded.redis_state import PartitionSnapshot
from jobs.runtime.state_bytes import state_from_bytes
from jobs.runtime.watermarks import PartitionWatermark


class Shard:
    __slots__ = (
        "_fire",
        "_on_event",
        "at_eof",
        "ended",
        "offsets",
        "partition",
        "runner",
        "sizes",
        "state_bytes",
        "watermark",
    )

    def __init__(self, partition: int, join: SampleJoin, watermark: PartitionWatermark) -> None:
        self.partition = partition
        self.runner = KeyedRunner(join, DictStore(), track_dirty=True)
        self._on_event, self._fire = self.runner.on_event, self.runner.fire  # bound once: per event
        self.watermark = watermark
        self.offsets: dict[str, int] = {}  # topic -> next offset to consume
        self.at_eof: dict[str, bool] = {}
        self.sizes: dict[str, int] = {}  # request_id -> bytes in Redis
        self.state_bytes = 0
        self.ended = False  # bounded mode: everything pending was resolved (watermark to +inf)

    @classmethod
    def load(
        cls,
        snap: PartitionSnapshot,
        join: SampleJoin,
        sources: Iterable[str],
        clock: Callable[[], float],
    ) -> Shard:
        """A shard as its checkpoint left it: states (timers re-derived from them), offsets, watermark."""
        spec = join.config
        wm = PartitionWatermark(
            sources,
            spec.out_of_orderness,
            spec.idleness,
            clock,
            max_ts=snap.max_ts,
            floor=snap.watermark if snap.watermark is not None else WATERMARK_START,
        )
        shard = cls(snap.partition, join, wm)
        shard.offsets = dict(snap.offsets)
        shard.ended = snap.ended
        restore = shard.runner.restore
        for key, data in snap.records.items():
            restore(key, state_from_bytes(data))
            shard.sizes[key] = len(data)
            shard.state_bytes += len(data)
        assert shard.runner.dirty is not None
        shard.runner.dirty.clear()
        return shard

    @property
    def states(self) -> DictStore:
        return self.runner.store  # type: ignore[return-value]

    @property
    def dirty(self) -> set[str]:
        assert self.runner.dirty is not None
        return self.runner.dirty

    @property
    def samples(self) -> list[Sample]:
        return self.runner.samples

    @property
    def unmatched(self) -> list[UnmatchedLabel]:
        return self.runner.unmatched

    def process(self, topic: str, event: Event) -> None:
        """One event of ``topic`` under the current watermark; then advance the watermark with it."""
        wm = self.watermark
        self._on_event(event, wm.current)
        if wm.observe(topic, event.event_time_ms):
            self._fire(wm.current)

    def fire(self) -> None:
        """Fire the timers the current watermark has passed (e.g. after an idle source stopped holding it)."""
        self.runner.fire(self.watermark.current)

    def end(self) -> None:
        """Bounded mode: the input of this partition ended; resolve everything pending."""
        self.runner.fire(WATERMARK_END)
        self.ended = True

    def pending_timers(self) -> int:
        queue = self.runner.queue
        return 0 if queue is None else len(queue.heap)
