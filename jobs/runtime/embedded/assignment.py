"""The partitions an embedded-runtime member owns, and what a consumer-group rebalance does to them.

On assignment each new partition number's shard is loaded from its checkpoint (taking its fencing
token in Redis) and consumption resumes at the checkpointed offsets; on revocation the shards are
checkpointed, then dropped; on a lost partition they are dropped without a checkpoint (someone else
may own them already). When a checkpoint finds a partition fenced, :meth:`Assignment.on_fenced`
drops it and, if Kafka still gives it to us, loads it afresh.

A partition without a checkpoint is a first start when the consumer group has no committed offsets
for it (it starts at ``auto.offset.reset``), and a lost checkpoint when it has some: the runtime
commits every checkpoint's offsets after writing it, so committed offsets without a checkpoint mean
Redis lost it (not persisted, flushed, another key prefix). That is logged, counted and handled by
``checkpoint.on_missing``. See docs/guarantees.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition

from jobs.config import OnMissingCheckpoint
from jobs.core.join import SampleJoin
from jobs.errors import JobError
from jobs.runtime.embedded.metrics import RuntimeMetrics
from jobs.runtime.embedded.redis_state import RedisState
from jobs.runtime.embedded.shard import Shard
from jobs.runtime.kafka_io import kafka_error_text

log = logging.getLogger("jobs.runtime.embedded.runtime")

COMMITTED_TIMEOUT_S = 10.0


class LostCheckpoint(JobError):
    """Partitions have committed offsets but no checkpoint, and ``checkpoint.on_missing`` is ``fail``."""


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
        group_id: str,
        on_missing: OnMissingCheckpoint,
    ) -> None:
        self.redis = redis
        self.join = join
        self.inputs = inputs
        self.clock = clock
        self.metrics = metrics
        latest = offset_reset in ("latest", "largest", "end")
        self.offset_reset = "latest" if latest else "earliest"
        self.start_offset = OFFSET_END if latest else OFFSET_BEGINNING  # where a partition without a checkpoint starts
        self.checkpoint = checkpoint  # checkpoint everything now and wait for the write
        self.group_id = group_id
        self.on_missing = on_missing
        self.shards: dict[int, Shard] = {}
        self.consumer: Any = None
        self.in_rebalance = False

    def on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        new = [p for p in numbers if p not in self.shards]
        self._take(consumer, new, partitions)
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
        self._take(consumer, mine, assignment)
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

    def _take(self, consumer: Any, numbers: list[int], partitions: list[Any]) -> None:
        """Load the shards of ``numbers`` from their checkpoints, decide where those without one start,
        and point every partition of ``partitions`` at its offset."""
        snapshots = self.redis.take(numbers)
        for p in numbers:
            self.shards[p] = Shard.load(snapshots[p], self.join, self.inputs, self.clock)
        self.metrics.partitions.set(len(self.shards))
        fresh = {p for p in numbers if not snapshots[p].checkpointed}
        starts = self._without_checkpoint(consumer, [tp for tp in partitions if tp.partition in fresh])
        for tp in partitions:
            shard = self.shards.get(tp.partition)
            offset = shard.offsets.get(tp.topic) if shard is not None else None
            if offset is None:
                offset = starts.get((tp.topic, tp.partition), self.start_offset)
            tp.offset = offset

    def _without_checkpoint(self, consumer: Any, partitions: list[Any]) -> dict[tuple[str, int], int]:
        """Where the topic-partitions of partition numbers without a checkpoint start, when not at
        ``auto.offset.reset``: a first start has no committed offsets; committed offsets mean a lost
        checkpoint, handled by ``checkpoint.on_missing`` (raises :class:`LostCheckpoint` for ``fail``)."""
        if not partitions:
            return {}
        committed = self._committed(consumer, partitions)
        lost = sorted({p for _, p in committed})
        first = sorted({tp.partition for tp in partitions} - set(lost))
        if first:
            log.info(
                "no checkpoint and no committed offsets (a first start): reading from the %s offsets "
                "(auto.offset.reset)",
                self.offset_reset,
                extra={"group_id": self.group_id, "partitions": first},
            )
        if not lost:
            return {}
        self.metrics.lost_checkpoints.inc(len(lost))
        in_order = sorted(committed.items(), key=lambda item: (item[0][1], item[0][0]))
        offsets = ", ".join(f"{t}[{p}]={o}" for (t, p), o in in_order)
        where = (
            f"group {self.group_id} has committed offsets for partitions {lost} ({offsets}) but Redis at "
            f"{self.redis.url} has no checkpoint of them (key prefix {self.redis.base})"
        )
        if self.on_missing == "fail":
            raise LostCheckpoint(
                f"lost checkpoint: {where}; restart with --on-missing-checkpoint earliest (re-read every retained "
                "event, rebuilding the state) or committed (resume at the committed offsets, losing the pending "
                "impressions' state), see docs/guarantees.md"
            )
        action = {
            "earliest": "re-reading every retained event (the state is rebuilt; samples are emitted again)",
            "committed": "resuming at the committed offsets (the pending impressions' state is lost)",
        }[self.on_missing]
        log.error(
            f"lost checkpoint: {where}; checkpoint.on_missing={self.on_missing}: {action}",
            extra={"group_id": self.group_id, "partitions": lost, "committed": {f"{t}[{p}]": o for (t, p), o in
                                                                                 committed.items()}},
        )
        lost_tps = [tp for tp in partitions if tp.partition in lost]
        if self.on_missing == "earliest":
            return {(tp.topic, tp.partition): OFFSET_BEGINNING for tp in lost_tps}
        for (topic, p), offset in committed.items():  # the next checkpoint records where we resumed
            self.shards[p].offsets[topic] = offset
        return dict(committed)

    def _committed(self, consumer: Any, partitions: list[Any]) -> dict[tuple[str, int], int]:
        """The group's committed offsets of ``partitions`` (those it has)."""
        try:
            got = consumer.committed(
                [TopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=COMMITTED_TIMEOUT_S
            )
        except KafkaException as exc:
            raise JobError(
                f"cannot read the committed offsets of group {self.group_id} (to tell a first start from a lost "
                f"checkpoint): {kafka_error_text(exc)}"
            ) from exc
        return {(tp.topic, tp.partition): tp.offset for tp in got if tp.error is None and tp.offset >= 0}
