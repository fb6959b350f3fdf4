"""The embedded streaming runtime (``run --engine local``): Kafka in, the join core, Kafka out, Redis state.

One consumer group reads the three event topics (co-partitioned by ``request_id``; the ``range``
assignor gives partition *p* of every topic to the same member). Everything of partition number *p*
forms a :class:`Shard`: the requests' join state, their event-time timers (a heap), the watermark
(:mod:`jobs.runtime.watermarks`) and the offsets consumed. Samples go to ``samples.<task>`` (key
``impression_id``), unmatched labels to ``samples.unmatched`` (key ``request_id``) through an
idempotent producer; undecodable records go to ``deadletter`` with their original key and bytes and
the headers ``error``, ``source_topic``, ``source_partition``, ``source_offset``.

Every ``checkpoint.interval`` the producer is flushed, then the dirty keys' state and each owned
partition's offsets and watermark are written to Redis in one transaction
(:mod:`jobs.runtime.redis_state`). On (re)assignment a shard is loaded from its checkpoint and
consumption resumes at the checkpointed offsets (committed Kafka offsets are only for monitoring);
on revocation it is checkpointed and dropped. Outputs since the last checkpoint may be emitted again
after a crash, with the same ``sample_id`` (docs/guarantees.md: at-least-once, deduplicated downstream).
"""

from __future__ import annotations

import gc
import heapq
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from jobs.config import SampleJoinConfig
from jobs.core import WATERMARK_END, BadEvent, RequestState, SampleJoin, Step, event_from_json
from jobs.errors import JobError
from jobs.runtime.kafka_io import (
    TYPE_OF_RECORD,
    WireFormat,
    consumer_settings,
    kafka_error_text,
    producer_settings,
    topic_partitions,
)
from jobs.runtime.metrics import RuntimeMetrics, configure_logging
from jobs.runtime.redis_state import PartitionFenced, PartitionSnapshot, RedisState
from jobs.runtime.watermarks import PartitionWatermark

log = logging.getLogger("jobs.runtime.embedded")

POLL_BATCH = 2000
POLL_TIMEOUT_S = 0.02  # consume() waits this long for a full batch: bounds the added latency
IDLE_CHECK_S = 0.1
PUBLISH_S = 1.0
STALL_S = 1.0  # a checkpoint blocked longer than this does not count towards idleness
GC_THRESHOLD = 50_000  # allocations between young-generation collections (CPython's default: 700)


class RuntimeUnavailable(JobError):
    """Kafka or Redis cannot be reached (at start), or a topic is missing or not co-partitioned."""


@dataclass
class RunSummary:
    events_in: int = 0
    samples_out: int = 0
    unmatched: int = 0
    deadletter: int = 0
    ignored: int = 0
    checkpoints: int = 0
    checkpoint_seconds: float = 0.0  # spent checkpointing (flush + state + Redis), all together
    by_attribution: dict[str, int] = field(default_factory=dict)
    state_bytes_per_pending_impression: float | None = None
    seconds: float = 0.0
    active_seconds: float = 0.0  # from the first input record to the last one processed
    active_cpu_seconds: float = 0.0  # this process's CPU time (all threads) over that span
    finished_input: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class _Snapshot:
    """Timing and offsets of a checkpoint whose write is in flight."""

    started: float
    flushed: float
    serialized: float
    offsets: list[Any]


@dataclass
class Shard:
    """All that belongs to one input partition number."""

    partition: int
    watermark: PartitionWatermark
    states: dict[str, RequestState] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    heap: list[tuple[int, str]] = field(default_factory=list)
    scheduled: set[tuple[str, int]] = field(default_factory=set)
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset to consume
    at_eof: dict[str, bool] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # request_id -> bytes in Redis
    state_bytes: int = 0
    ended: bool = False  # bounded mode: everything pending was resolved (watermark to +inf)


class EmbeddedRuntime:
    def __init__(
        self,
        config: SampleJoinConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: RuntimeMetrics | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.join = SampleJoin(config.join)
        self.wire = WireFormat()
        self._decode = self.wire.codec.decode
        self._encode_sample = self.wire.codec.encode
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending: tuple[Future[Any], _Snapshot] | None = None  # the checkpoint write in flight
        self._step = Step(None, [], [], [], [])  # reused for every call into the core (emptied by _apply)
        self.metrics = metrics or RuntimeMetrics()
        topics = config.kafka.topics
        self.inputs = [topics.impressions, topics.feature_snapshots, topics.labels]
        self.sample_topics = {t.name: topics.samples(t.name) for t in config.join.tasks}
        self.unmatched_topic = topics.unmatched
        self.deadletter_topic = topics.deadletter
        self.shards: dict[int, Shard] = {}
        self._stop = threading.Event()
        self._delivery_errors: list[str] = []
        self._redis: RedisState | None = None
        self._consumer: Any = None
        self._producer: Any = None
        max_h = max(t.horizon for t in config.join.tasks)
        max_w = max(t.window for t in config.join.tasks)
        self._ttl_ms = max_h + max_w + 3_600_000  # state outlives nothing beyond the horizon (+ margin)
        self.last_bytes_per_impression: float | None = None
        self.finished_input = False
        self._num_partitions = 0
        self._in_rebalance = False
        self.first_message_at: float | None = None
        self.last_message_at: float | None = None
        self._cpu_first = self._cpu_last = 0.0  # process CPU time (all threads) over the same span
        self._failed = False  # an unexpected error: in-memory state may be half-applied, never checkpoint it

    # -- lifecycle --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current batch, flush, checkpoint and return (safe from a signal handler)."""
        self._stop.set()

    def connect(self) -> None:
        """Check Redis and Kafka (short timeouts) and the topics; raise RuntimeUnavailable with one line."""
        cfg = self.config
        redis_state = RedisState(cfg.redis.url, cfg.redis.key_prefix, cfg.kafka.group_id, self._ttl_ms)
        try:
            redis_state.ping()
        except Exception as exc:
            redis_state.close()
            raise RuntimeUnavailable(f"cannot reach Redis at {cfg.redis.url}: {_one_line(exc)}") from exc
        bootstrap = cfg.kafka.bootstrap_servers
        outputs = [*self.sample_topics.values(), self.unmatched_topic, self.deadletter_topic]
        try:
            counts = topic_partitions(bootstrap, self.inputs + outputs)
        except KafkaException as exc:
            redis_state.close()
            raise RuntimeUnavailable(f"cannot reach Kafka at {bootstrap}: {kafka_error_text(exc)}") from exc
        missing = [t for t in self.inputs if counts[t] is None]
        if missing:
            redis_state.close()
            raise RuntimeUnavailable(f"input topic(s) {', '.join(missing)} do not exist on {bootstrap}")
        sizes = {t: counts[t] for t in self.inputs}
        self._num_partitions = next(iter(sizes.values())) or 0
        if len(set(sizes.values())) != 1:
            redis_state.close()
            raise RuntimeUnavailable(f"input topics must be co-partitioned (same partition count), got {sizes}")
        absent = [t for t in outputs if counts[t] is None]
        if absent:
            from jobs.runtime.kafka_io import ensure_topics

            partitions = next(iter(sizes.values())) or 1
            ensure_topics(bootstrap, absent, partitions)
            log.info("created output topics", extra={"topics": absent, "partitions": partitions})
        self._redis = redis_state
        rdkafka_log = logging.getLogger("rdkafka")
        self._consumer = Consumer(
            {
                **consumer_settings(bootstrap, cfg.kafka.group_id, dict(cfg.kafka.consumer)),
                "logger": rdkafka_log,
            }
        )
        self._producer = Producer(
            {
                **producer_settings(bootstrap, dict(cfg.kafka.producer)),
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
                "logger": rdkafka_log,
            }
        )

    def run(self) -> RunSummary:
        started = self.clock()
        if self._consumer is None:
            self.connect()
        # The state is many long-lived small objects and the hot path allocates many short-lived
        # ones: collect the young generation less often (a few % of CPU), restored on return.
        gc_thresholds = gc.get_threshold()
        gc.set_threshold(GC_THRESHOLD, *gc_thresholds[1:])
        consumer, producer, metrics = self._consumer, self._producer, self.metrics
        cfg = self.config
        port = cfg.metrics.port
        if port is not None:
            port = metrics.serve(port)
        log.info(
            "embedded runtime started",
            extra={
                "group_id": cfg.kafka.group_id,
                "inputs": self.inputs,
                "tasks": list(self.sample_topics),
                "metrics_port": port,
                "checkpoint_interval_ms": cfg.checkpoint.interval,
                "exit_when_idle_ms": cfg.local.exit_when_idle,
            },
        )
        consumer.subscribe(self.inputs, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        interval_s = cfg.checkpoint.interval / 1000.0
        exit_idle_s = None if cfg.local.exit_when_idle is None else cfg.local.exit_when_idle / 1000.0
        now = self.clock()
        next_checkpoint = now + interval_s
        next_idle_check = now + IDLE_CHECK_S
        next_publish = now + PUBLISH_S
        idle_since: float | None = None  # bounded mode: since when consume() has returned no record
        next_end_check = now
        process = self._process
        try:
            while not self._stop.is_set():
                messages = consumer.consume(POLL_BATCH, POLL_TIMEOUT_S)
                now = self.clock()
                got_data = False
                if messages:
                    got_data = process(messages)
                    producer.poll(0)
                    if got_data:
                        if self.first_message_at is None:
                            self.first_message_at = now
                            self._cpu_first = time.process_time()
                        self.last_message_at = self.clock()
                        self._cpu_last = time.process_time()
                if now >= next_idle_check:
                    next_idle_check = now + IDLE_CHECK_S
                    for shard in list(self.shards.values()):
                        if shard.watermark.check_idle():
                            self._fire(shard, shard.watermark.current)
                if got_data:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                if now >= next_checkpoint:
                    self.checkpoint()
                    # The state is long-lived and (almost) never cyclic: take what exists now out of
                    # the cyclic collector's scans (a full collection over it pauses ~100 ms per 200k
                    # objects); refcounting still frees it when it goes.
                    gc.freeze()
                    done = self.clock()
                    next_checkpoint = done + interval_s
                    if done - now > STALL_S:
                        # We were blocked (Redis or Kafka away): the inputs were not silent, we were
                        # not listening. Restart the idleness clocks instead of blaming the sources.
                        idle_since = None
                        for shard in self.shards.values():
                            shard.watermark.excuse(done)
                if now >= next_publish:
                    next_publish = now + PUBLISH_S
                    metrics.publish()
                    metrics.set_watermarks({p: s.watermark.current for p, s in self.shards.items()})
                if (
                    exit_idle_s is not None
                    and self.shards
                    and idle_since is not None
                    and now - idle_since >= exit_idle_s
                    and now >= next_end_check
                ):
                    next_end_check = now + 0.5
                    if self._finish_bounded():
                        self.finished_input = True
                        break
            self.checkpoint(wait=True)
        except BaseException:
            self._failed = True
            raise
        finally:
            gc.set_threshold(*gc_thresholds)
            gc.unfreeze()
            self._close()
        metrics.publish()
        t = metrics.totals
        summary = RunSummary(
            events_in=t.events_in,
            samples_out=t.samples_out,
            unmatched=t.unmatched,
            deadletter=t.deadletter,
            ignored=t.ignored,
            checkpoints=t.checkpoints,
            checkpoint_seconds=round(t.checkpoint_seconds, 3),
            by_attribution=dict(t.by_attribution),
            state_bytes_per_pending_impression=self.last_bytes_per_impression,
            seconds=round(self.clock() - started, 3),
            active_seconds=round((self.last_message_at or 0.0) - (self.first_message_at or 0.0), 3),
            active_cpu_seconds=round(self._cpu_last - self._cpu_first, 3),
            finished_input=self.finished_input,
        )
        log.info("embedded runtime stopped", extra=summary.to_json())
        return summary

    def _finish_bounded(self) -> bool:
        """Bounded mode, once nothing arrived for ``exit_when_idle``: end the input of our partitions
        that are at their end (watermark to +inf, checkpointed as ``end``), and say whether the whole
        input is done: every other input partition ended by someone, per Redis. So a process never
        stops while partitions are held by a member that died (until the group notices) or are still
        being worked on by another live member.
        """
        assert self._redis is not None and self._consumer is not None
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
                self._fire(shard, WATERMARK_END)
                shard.ended = True
            self.checkpoint(wait=True)
        others = [p for p in range(self._num_partitions) if p not in self.shards]
        if not others:
            return True
        metas = self._redis.read_meta(others)
        # (Whether they are at their ends is known from the owner's partition EOF, recorded as `end`;
        # ListOffsets is not used: the local broker does not answer it correctly.)
        return all(metas[p].get("end") == "1" for p in others)

    def _close(self) -> None:
        if self._pending is not None and self._failed:
            # a consistent earlier snapshot: let it land, but an error here must not hide the first one
            try:
                self._await_write()
            except Exception as exc:
                log.warning("last checkpoint write failed", extra={"error": _one_line(exc)})
        if self._consumer is not None:
            try:
                self._consumer.close()  # revokes (our callback checkpoints, which is cheap by now)
            except Exception as exc:
                log.warning("closing the consumer failed", extra={"error": _one_line(exc)})
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
        self._writer.shutdown(wait=True)
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        self.metrics.close()

    # -- records ----------------------------------------------------------------------------------

    def _process(self, messages: list[Any]) -> bool:
        """Process one consumed batch (the hot path); returns whether it held any record."""
        shards = self.shards
        decode = self._decode
        type_of = TYPE_OF_RECORD
        from_json = event_from_json
        event_into = self.join.event_into
        step = self._step
        apply = self._apply
        events_in = self.metrics.counts.events_in
        touched: set[tuple[int, str]] = set()
        for msg in messages:
            if msg.error() is not None:
                self._on_consumer_error(msg)
                continue
            topic = msg.topic()
            p = msg.partition()
            touched.add((p, topic))
            shard = shards.get(p)
            if shard is None:  # a partition we no longer own (fenced); its new owner handles it
                continue
            shard.offsets[topic] = msg.offset() + 1
            shard.at_eof[topic] = False  # (a partition-EOF later in this batch sets it again)
            events_in[topic] += 1
            try:
                name, record = decode(msg.value())
                kind = type_of.get(name)
                if kind is None:
                    raise BadEvent(
                        f"a {name} record is not an input event (expected Impression, FeatureSnapshot or Label)"
                    )
                record["type"] = kind
                event = from_json(record)
            except Exception as exc:  # undecodable or invalid: dead letter, and go on
                self._deadletter(msg, _one_line(exc))
                continue
            key = event.request_id
            wm = shard.watermark
            step.state = shard.states.get(key)
            event_into(step, event, wm.current)
            apply(shard, key, step)
            if wm.observe(topic, event.event_time_ms):
                heap = shard.heap
                if heap and heap[0][0] <= wm.current:
                    self._fire(shard, wm.current)
        if not touched:
            return False
        now = self.clock()
        for p, topic in touched:
            shard = shards.get(p)
            if shard is not None:
                shard.ended = False
                shard.watermark.touch(topic, now)
        return True

    def _fire(self, shard: Shard, watermark: int) -> None:
        heap, scheduled, states = shard.heap, shard.scheduled, shard.states
        timer_into, step, apply = self.join.timer_into, self._step, self._apply
        while heap and heap[0][0] <= watermark:
            ts, key = heapq.heappop(heap)
            scheduled.discard((key, ts))
            state = states.get(key)
            if state is None:
                continue
            step.state = state
            timer_into(step, ts, watermark)
            apply(shard, key, step)

    def _apply(self, shard: Shard, key: str, step: Step) -> None:
        """Take one Step's effects (state, timers, outputs), then empty it for reuse."""
        state = step.state
        if state is None:
            shard.states.pop(key, None)
        else:
            shard.states[key] = state
        shard.dirty.add(key)
        timers = step.timers
        if timers:
            scheduled, heap = shard.scheduled, shard.heap
            for ts in timers:
                item = (key, ts)
                if item not in scheduled:
                    scheduled.add(item)
                    heapq.heappush(heap, (ts, key))
            timers.clear()
        samples = step.samples
        if samples:
            produce, encode, topics = self._producer.produce, self._encode_sample, self.sample_topics
            samples_out = self.metrics.counts.samples_out
            for sample in samples:
                value = encode("Sample", sample.to_json())
                try:
                    produce(topics[sample.task], value, sample.impression_id.encode())
                except BufferError:  # local queue full: let it drain, then retry
                    self._produce(topics[sample.task], value, sample.impression_id.encode())
                samples_out[(sample.task, sample.attribution)] += 1
            samples.clear()
        if step.unmatched:
            encode_unmatched = self.wire.encode_unmatched
            counts = self.metrics.counts
            for record in step.unmatched:
                self._produce(self.unmatched_topic, encode_unmatched(record.to_json()), record.request_id.encode())
                counts.unmatched[record.reason] += 1
            step.unmatched.clear()
        if step.ignored_label_types:
            self.metrics.counts.ignored.update(step.ignored_label_types)
            step.ignored_label_types.clear()

    def _produce(self, topic: str, value: bytes, key: bytes | None, headers: Any = None) -> None:
        producer = self._producer
        while True:
            try:
                if headers is None:
                    producer.produce(topic, value, key)
                else:
                    producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:  # local queue full: let it drain
                producer.poll(0.05)

    def _deadletter(self, msg: Any, reason: str) -> None:
        headers = [
            ("error", reason.encode("utf-8", "replace")),
            ("source_topic", msg.topic().encode()),
            ("source_partition", str(msg.partition()).encode()),
            ("source_offset", str(msg.offset()).encode()),
        ]
        self._produce(self.deadletter_topic, msg.value() or b"", msg.key(), headers)
        self.metrics.counts.deadletter[msg.topic()] += 1
        log.warning(
            "dead-lettered a record",
            extra={
                "source_topic": msg.topic(),
                "source_partition": msg.partition(),
                "source_offset": msg.offset(),
                "error": reason,
            },
        )

    def _on_consumer_error(self, msg: Any) -> None:
        err = msg.error()
        if err.code() == KafkaError._PARTITION_EOF:
            shard = self.shards.get(msg.partition())
            if shard is not None:
                shard.at_eof[msg.topic()] = True
            return
        if err.fatal():
            raise JobError(f"Kafka consumer failed: {err.str()}")
        log.warning("kafka consumer error (retrying)", extra={"error": err.str(), "code": err.name()})

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err.str()}")

    # -- checkpoints ------------------------------------------------------------------------------

    def checkpoint(self, wait: bool = False) -> None:
        """Flush the producer, then snapshot the dirty state, the offsets and the watermarks of every
        shard and have them written to Redis atomically, by the writer thread while processing goes
        on (``wait=True``: return once written). Writes stay in order: a checkpoint first waits for
        the previous one's write."""
        if self._redis is None or self._producer is None or self._failed:
            return
        self._await_write()
        started = time.monotonic()
        producer = self._producer
        while True:
            remaining = producer.flush(5.0)
            if not remaining:
                break
            log.warning("waiting for Kafka to take the outputs before checkpointing", extra={"undelivered": remaining})
        flushed = time.monotonic()
        if self._delivery_errors:
            errors = self._delivery_errors
            raise JobError(
                f"Kafka did not take {len(errors)} output record(s) (first: {errors[0]}); "
                "not checkpointing: a restart re-emits them"
            )
        writes: dict[tuple[int, str], bytes | None] = {}
        meta: dict[int, dict[str, int]] = {}
        sampled_bytes = sampled_impressions = 0
        for p, shard in self.shards.items():
            states, sizes = shard.states, shard.sizes
            for key in shard.dirty:
                state = states.get(key)
                if state is None:
                    if key in sizes:
                        writes[(p, key)] = None
                        shard.state_bytes -= sizes.pop(key)
                else:
                    data = state.to_bytes()
                    writes[(p, key)] = data
                    shard.state_bytes += len(data) - sizes.get(key, 0)
                    sizes[key] = len(data)
                    if state.impressions:
                        sampled_bytes += len(data)
                        sampled_impressions += len(state.impressions)
            shard.dirty.clear()
            fields: dict[str, int] = {}
            for topic, offset in shard.offsets.items():
                fields[f"o:{topic}"] = offset
            for topic, ts in shard.watermark.max_ts.items():
                if ts > -(2**63):
                    fields[f"t:{topic}"] = ts
            fields["wm"] = shard.watermark.current
            fields["end"] = int(shard.ended)
            meta[p] = fields
        if not meta:
            return
        if sampled_impressions:
            self.last_bytes_per_impression = sampled_bytes / sampled_impressions
        offsets = [
            TopicPartition(topic, p, offset)
            for p, shard in self.shards.items()
            for topic, offset in shard.offsets.items()
        ]
        snapshot = _Snapshot(started, flushed, time.monotonic(), offsets)
        self._pending = (self._writer.submit(self._redis.checkpoint, writes, meta), snapshot)
        if wait:
            self._await_write()

    def _await_write(self) -> None:
        """Wait for the checkpoint write in flight, if any, and take its outcome."""
        if self._pending is None:
            return
        future, snap = self._pending
        self._pending = None
        try:
            stats = future.result()
        except PartitionFenced as exc:
            log.warning(
                "partitions were taken over (fencing token changed); dropping our view of them",
                extra={"partitions": exc.partitions},
            )
            self._drop(exc.partitions)
            self._retake(exc.partitions)
            return
        self._commit_offsets(snap.offsets)
        m = self.metrics
        took = (snap.serialized - snap.started) + stats.seconds  # flush + snapshot + the write itself
        m.checkpoint_seconds.observe(took)
        m.totals.checkpoints += 1
        m.totals.checkpoint_seconds += took
        pending = sum(len(s.impressions) for shard in self.shards.values() for s in shard.states.values())
        m.state_keys.set(sum(len(shard.states) for shard in self.shards.values()))
        m.pending_impressions.set(pending)
        m.state_bytes.set(sum(shard.state_bytes for shard in self.shards.values()))
        m.timers.set(sum(len(shard.heap) for shard in self.shards.values()))
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
                "pending_impressions": pending,
            },
        )

    def _commit_offsets(self, offsets: list[Any]) -> None:
        """Commit the checkpointed offsets to Kafka too, for monitoring (lag); never read back for correctness."""
        if self._consumer is None or not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.debug("offset commit failed (monitoring only)", extra={"error": _one_line(exc)})

    # -- rebalancing ------------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        assert self._redis is not None
        numbers = sorted({tp.partition for tp in partitions})
        new = [p for p in numbers if p not in self.shards]
        snapshots = self._redis.take(new)
        for p in new:
            self.shards[p] = self._load_shard(snapshots[p])
        start = self._start_offset()
        for tp in partitions:
            offset = self.shards[tp.partition].offsets.get(tp.topic)
            tp.offset = offset if offset is not None else start
        consumer.assign(partitions)
        self.metrics.partitions.set(len(self.shards))
        log.info(
            "partitions assigned",
            extra={
                "partitions": numbers,
                "restored_keys": {p: len(self.shards[p].states) for p in new},
                "offsets": {f"{tp.topic}[{tp.partition}]": tp.offset for tp in partitions},
            },
        )

    def _start_offset(self) -> int:
        """Where a partition without a checkpoint starts: the beginning, or the end if configured so."""
        reset = str(self.config.kafka.consumer.get("auto.offset.reset", "earliest"))
        return OFFSET_END if reset in ("latest", "largest", "end") else OFFSET_BEGINNING

    def _retake(self, numbers: list[int]) -> None:
        """After a fencing conflict: if Kafka still gives us these partitions, load their checkpoint
        afresh and rewind to it (whoever wrote it last; the state and its offsets always match). A
        member that really lost them gets its revocation from the group soon anyway."""
        consumer = self._consumer
        if consumer is None or self._redis is None or self._in_rebalance:
            return
        try:
            assignment = consumer.assignment()
        except KafkaException:
            return
        mine = sorted({tp.partition for tp in assignment} & set(numbers))
        if not mine:
            return
        snapshots = self._redis.take(mine)
        for p in mine:
            self.shards[p] = self._load_shard(snapshots[p])
        start = self._start_offset()
        for tp in assignment:
            shard = self.shards.get(tp.partition)
            offset = shard.offsets.get(tp.topic) if shard is not None else None
            tp.offset = offset if offset is not None else start
        consumer.assign(assignment)
        self.metrics.partitions.set(len(self.shards))
        log.warning("re-took partitions from their checkpoint", extra={"partitions": mine})

    def _load_shard(self, snap: PartitionSnapshot) -> Shard:
        jc = self.config.join
        wm = PartitionWatermark(
            self.inputs,
            jc.out_of_orderness,
            jc.idleness,
            self.clock,
            max_ts=snap.max_ts,
            floor=snap.watermark if snap.watermark is not None else -(2**63),
        )
        shard = Shard(partition=snap.partition, watermark=wm, offsets=dict(snap.offsets), ended=snap.ended)
        pending_timers = self.join.pending_timers
        for key, data in snap.records.items():
            state = RequestState.from_bytes(data)
            shard.states[key] = state
            shard.sizes[key] = len(data)
            shard.state_bytes += len(data)
            for ts in pending_timers(state):
                shard.scheduled.add((key, ts))
                shard.heap.append((ts, key))
        heapq.heapify(shard.heap)
        return shard

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        self._in_rebalance = True
        try:
            self.checkpoint(wait=True)  # a fenced partition is dropped inside
        finally:
            self._in_rebalance = False
        self._drop(numbers)
        log.info("partitions revoked", extra={"partitions": numbers})

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        self._drop(numbers)  # someone else may own them already: no checkpoint
        log.warning("partitions lost", extra={"partitions": numbers})

    def _drop(self, numbers: list[int]) -> None:
        for p in numbers:
            self.shards.pop(p, None)
        if self._redis is not None:
            self._redis.release(numbers)
        self.metrics.partitions.set(len(self.shards))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def run(config: SampleJoinConfig) -> RunSummary:
    """Run the embedded runtime until SIGTERM/SIGINT (or, in bounded mode, the end of the input).

    Raises RuntimeUnavailable (one-line message) when Kafka or Redis cannot be reached at start.
    """
    configure_logging()
    runtime = EmbeddedRuntime(config)
    runtime.connect()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda _s, _f: runtime.request_stop())
    try:
        return runtime.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
