"""The partitions an embedded-runtime member owns, and what a consumer-group rebalance does to them.

On assignment each new partition number's shard is loaded from its checkpoint (taking its fencing
token in Redis) and consumption resumes at the checkpointed offsets; on revocation the shards are
checkpointed, then dropped; on a lost partition they are dropped without a checkpoint (someone else
may own them already). When a checkpoint finds a partition fenced, :meth:`Assignment.on_fenced`
drops it and, if Kafka still gives it to us, loads it afresh. See docs/guarantees.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException

from jobs.core.join import SampleJoin
from jobs.runtime.embedded_shard import Shard
from jobs.runtime.metrics import RuntimeMetrics
from jobs.runtime.redis_state import RedisState

log = logging.getLogger("jobs.runtime.embedded")


class Assignment:
    def __init__(
        self,
        redis: RedisState,
        join: SampleJoin,
        inputs: list[str],
        clock: Callable[[], float],
        metrics: RuntimeMetrics,
        offset_reset: str,
        checkpoint: Callable[[], None],
    ) -> None:
        self.redis = redis
        self.join = join
        self.inputs = inputs
        self.clock = clock
        self.metrics = metrics
        latest = offset_reset in ("latest", "largest", "end")
        self.start_offset = OFFSET_END if latest else OFFSET_BEGINNING  # where a partition without a checkpoint starts
        self.checkpoint = checkpoint  # checkpoint everything now and wait for the write
        self.shards: dict[int, Shard] = {}
        self.consumer: Any = None
        self.in_rebalance = False

    def on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        new = [p for p in numbers if p not in self.shards]
        self._load(new)
        self._seek(partitions)
        consumer.assign(partitions)
        log.info(
            "partitions assigned",
            extra={
                "partitions": numbers,
                "restored_keys": {p: len(self.shards[p].states) for p in new},
                "offsets": {f"{tp.topic}[{tp.partition}]": tp.offset for tp in partitions},
            },
        )

    def on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        self.in_rebalance = True
        try:
            self.checkpoint()  # a fenced partition is dropped inside
        finally:
            self.in_rebalance = False
        self.drop(numbers)
        log.info("partitions revoked", extra={"partitions": numbers})

    def on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        self.drop(numbers)  # someone else may own them already: no checkpoint
        log.warning("partitions lost", extra={"partitions": numbers})

    def on_fenced(self, numbers: list[int]) -> None:
        """Another process took these partitions over since we loaded them: drop our view, and if
        Kafka still gives them to us, load their checkpoint afresh and rewind to it (whoever wrote it
        last; the state and its offsets always match). A member that really lost them gets its
        revocation from the group soon anyway."""
        self.drop(numbers)
        consumer = self.consumer
        if consumer is None or self.in_rebalance:
            return
        try:
            assignment = consumer.assignment()
        except KafkaException:
            return
        mine = sorted({tp.partition for tp in assignment} & set(numbers))
        if not mine:
            return
        self._load(mine)
        self._seek(assignment)
        consumer.assign(assignment)
        log.warning("re-took partitions from their checkpoint", extra={"partitions": mine})

    def finish_bounded(self, num_partitions: int, emit: Callable[[Shard], None]) -> bool:
        """Bounded mode, once nothing arrived for ``exit_when_idle``: end the input of our partitions
        that are at their end (watermark to +inf, checkpointed as ``end``), and say whether the whole
        input is done: every other input partition ended by someone, per Redis. So a process never
        stops while partitions are held by a member that died (until the group notices) or are still
        being worked on by another live member.
        """
        shards = list(self.shards.values())
        if not all(all(s.at_eof.get(t, False) for t in self.inputs) for s in shards):
            return False
        newly = [s for s in shards if not s.ended]
        if newly:
            log.info(
                "partitions at their end and idle: ending their input",
                extra={"partitions": [s.partition for s in newly]},
            )
            for shard in newly:
                shard.end()
                emit(shard)
            self.checkpoint()
        others = [p for p in range(num_partitions) if p not in self.shards]
        if not others:
            return True
        metas = self.redis.read_meta(others)
        # (Whether they are at their ends is known from the owner's partition EOF, recorded as `end`;
        # ListOffsets is not used: the local broker does not answer it correctly.)
        return all(metas[p].get("end") == "1" for p in others)

    def drop(self, numbers: list[int]) -> None:
        for p in numbers:
            self.shards.pop(p, None)
        self.redis.release(numbers)
        self.metrics.partitions.set(len(self.shards))

    def _load(self, numbers: list[int]) -> None:
        snapshots = self.redis.take(numbers)
        for p in numbers:
            self.shards[p] = Shard.load(snapshots[p], self.join, self.inputs, self.clock)
        self.metrics.partitions.set(len(self.shards))

    def _seek(self, partitions: list[Any]) -> None:
        """Point each partition at its shard's checkpointed offset, else at the configured start."""
        for tp in partitions:
            shard = self.shards.get(tp.partition)
            offset = shard.offsets.get(tp.topic) if shard is not None else None
            tp.offset = offset if offset is not None else self.start_offset
