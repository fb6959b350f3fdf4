"""Checkpoints of the embedded runtime: flush the outputs, snapshot the shards, write to Redis.

A checkpoint first makes Kafka take every output produced so far (:meth:`KafkaSink.flush`), then takes
each shard's dirty states (as bytes), offsets and watermark, and hands them to a writer thread that
writes them in one Redis transaction (:meth:`RedisState.checkpoint`) while processing goes on. Writes
stay in order: a checkpoint first waits for the previous one's write. When a write finds a partition
fenced (another process took it over), the runtime is told through ``on_fenced``. See
docs/guarantees.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from jobs.core.state import WATERMARK_START
from jobs.runtime.embedded.metrics import RuntimeMetrics
from jobs.runtime.embedded.redis_state import CheckpointStats, PartitionFenced, RedisState
from jobs.runtime.embedded.shard import Shard
from jobs.runtime.embedded.sink import KafkaSink
from jobs.runtime.state_bytes import state_to_bytes

log = logging.getLogger("jobs.runtime.embedded.runtime")


@dataclass
class _InFlight:
    """A checkpoint whose write is in flight: its future, timings and the offsets it holds."""

    future: Future[CheckpointStats]
    started: float
    flushed: float
    serialized: float
    offsets: list[tuple[str, int, int]]  # (topic, partition, next offset)


class RedisCheckpointer:
    def __init__(
        self,
        redis: RedisState,
        metrics: RuntimeMetrics,
        on_fenced: Callable[[list[int]], None],
        on_written: Callable[[list[tuple[str, int, int]]], None],
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.on_fenced = on_fenced  # partitions another process took over: drop (and maybe retake) them
        self.on_written = on_written  # the offsets of a checkpoint now in Redis (committed to the consumer group)
        self.last_bytes_per_impression: float | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._in_flight: _InFlight | None = None

    def checkpoint(self, shards: Mapping[int, Shard], sink: KafkaSink, wait: bool = False) -> None:
        """Flush the outputs, snapshot every shard and have it written (``wait=True``: return once written)."""
        self.await_write()
        started = time.monotonic()
        sink.flush()
        flushed = time.monotonic()
        writes: dict[tuple[int, str], bytes | None] = {}
        meta: dict[int, dict[str, int]] = {}
        sampled_bytes = sampled_impressions = 0
        for p, shard in shards.items():
            states, sizes = shard.states, shard.sizes
            for key in shard.dirty:
                state = states.get(key)
                if state is None:
                    if key in sizes:
                        writes[(p, key)] = None
                        shard.state_bytes -= sizes.pop(key)
                else:
                    data = state_to_bytes(state)
                    writes[(p, key)] = data
                    shard.state_bytes += len(data) - sizes.get(key, 0)
                    sizes[key] = len(data)
                    if state.impressions:
                        sampled_bytes += len(data)
                        sampled_impressions += len(state.impressions)
            shard.dirty.clear()
            fields = {f"o:{topic}": offset for topic, offset in shard.offsets.items()}
            for topic, ts in shard.watermark.max_ts.items():
                if ts > WATERMARK_START:
                    fields[f"t:{topic}"] = ts
            fields["wm"] = shard.watermark.current
            fields["end"] = int(shard.ended)
            meta[p] = fields
        if not meta:
            return
        if sampled_impressions:
            self.last_bytes_per_impression = sampled_bytes / sampled_impressions
        offsets = [(topic, p, offset) for p, shard in shards.items() for topic, offset in shard.offsets.items()]
        future = self._writer.submit(self.redis.checkpoint, writes, meta)
        self._in_flight = _InFlight(future, started, flushed, time.monotonic(), offsets)
        if wait:
            self.await_write()

    def await_write(self) -> None:
        """Wait for the checkpoint write in flight, if any, and take its outcome."""
        if self._in_flight is None:
            return
        snap = self._in_flight
        self._in_flight = None
        try:
            stats = snap.future.result()
        except PartitionFenced as exc:
            log.warning(
                "partitions were taken over (fencing token changed); dropping our view of them",
                extra={"partitions": exc.partitions},
            )
            self.on_fenced(exc.partitions)
            return
        self.on_written(snap.offsets)
        self._record(snap, stats)

    def has_write_in_flight(self) -> bool:
        return self._in_flight is not None

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    def _record(self, snap: _InFlight, stats: CheckpointStats) -> None:
        m = self.metrics
        took = (snap.serialized - snap.started) + stats.seconds  # flush + snapshot + the write itself
        m.checkpoint_seconds.observe(took)
        m.totals.checkpoints += 1
        m.totals.checkpoint_seconds += took
        if self.last_bytes_per_impression is not None:
            m.state_bytes_per_impression.set(self.last_bytes_per_impression)
        log.info(
            "checkpoint",
            extra={
                "seconds": round(took, 4),
                "flush_seconds": round(snap.flushed - snap.started, 4),
                "serialize_seconds": round(snap.serialized - snap.flushed, 4),
                "redis_seconds": round(stats.seconds, 4),
                "keys_written": stats.keys_written,
                "keys_deleted": stats.keys_deleted,
                "bytes": stats.bytes_written,
            },
        )


def gauge_shards(metrics: RuntimeMetrics, shards: Mapping[int, Shard]) -> None:
    """Set the state gauges (keys, pending impressions, bytes, timers) from the shards."""
    metrics.state_keys.set(sum(len(shard.states) for shard in shards.values()))
    metrics.pending_impressions.set(
        sum(len(s.impressions) for shard in shards.values() for s in shard.states.values())
    )
    metrics.state_bytes.set(sum(shard.state_bytes for shard in shards.values()))
    metrics.timers.set(sum(shard.pending_timers() for shard in shards.values()))
