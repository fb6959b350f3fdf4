"""The embedded streaming runtime (``run --engine local``): Kafka in, the join core, Kafka out, Redis state.

One consumer group reads the three event topics (co-partitioned by ``request_id``; the ``range``
assignor gives partition *p* of every topic to the same member). Everything of partition number *p*
is a :class:`~jobs.runtime.embedded.shard.Shard`. This module is the loop around them:

- consume a batch, decode each record through :class:`~jobs.runtime.kafka_io.WireFormat` (bad ones go
  to the dead letter), hand it to its shard, then give the batch's outputs to the
  :class:`~jobs.runtime.embedded.sink.KafkaSink`;
- every ``checkpoint.interval``, have the :class:`~jobs.runtime.embedded.checkpointer.RedisCheckpointer` flush
  the outputs and write the shards' state, offsets and watermarks to Redis atomically;
- on (re)assignment load a shard from its checkpoint and resume at its offsets; a partition without
  one but with committed Kafka offsets lost its checkpoint (``checkpoint.on_missing`` says what then,
  :mod:`~jobs.runtime.embedded.assignment`); on revocation checkpoint it and drop it;
- in bounded mode (``local.exit_when_idle``), end the input and exit once everything is read.

Outputs since the last checkpoint may be emitted again after a crash, with the same ``sample_id``
(docs/guarantees.md: at-least-once, deduplicated downstream).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from common.errors import ServiceError
from common.services import check_redis_durability, one_line, wait_until_reachable
from common.task_contract import publish_task_contract
from jobs.config import SampleJoinConfig
from jobs.core import SampleJoin
from jobs.errors import JobError
from jobs.runtime.embedded.assignment import Assignment
from jobs.runtime.embedded.checkpointer import RedisCheckpointer, gauge_shards
from jobs.runtime.embedded.metrics import RuntimeMetrics, configure_logging
from jobs.runtime.embedded.redis_state import RedisState
from jobs.runtime.embedded.shard import Shard
from jobs.runtime.embedded.sink import KafkaSink
from jobs.runtime.kafka_io import (
    RuntimeUnavailable,
    WireFormat,
    check_topics,
    consumer_settings,
    kafka_error_text,
    producer_settings,
    topic_partitions,
)
from jobs.runtime.summary import RunSummary

log = logging.getLogger("jobs.runtime.embedded.runtime")

__all__ = ["EmbeddedRuntime", "RunSummary", "RuntimeUnavailable", "run"]

POLL_BATCH = 2000
POLL_TIMEOUT_S = 0.02  # consume() waits this long for a full batch: bounds the added latency
IDLE_CHECK_S = 0.1
PUBLISH_S = 1.0
STALL_S = 1.0  # a checkpoint blocked longer than this does not count towards idleness
GC_THRESHOLD = 50_000  # allocations between young-generation collections (CPython's default: 700)


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
        self.join = SampleJoin(config.join.spec())
        self.wire = WireFormat.for_join(config.kafka, config.join.tasks)  # (confluent: registers the outputs)
        self.metrics = metrics or RuntimeMetrics()
        topics = config.kafka.topics
        self.inputs = [topics.impressions, topics.feature_snapshots, topics.labels]
        self.sample_topics = {t.name: topics.samples(t.name) for t in config.join.tasks}
        self.outputs = [*self.sample_topics.values(), topics.unmatched, topics.deadletter]
        self.shards: dict[int, Shard] = {}  # the assignment's (one dict, shared)
        self._assignment: Assignment | None = None
        self._stop = threading.Event()
        self._redis: RedisState | None = None
        self._checkpointer: RedisCheckpointer | None = None
        self._consumer: Any = None
        self._sink: KafkaSink | None = None
        max_h = max(t.horizon for t in config.join.tasks)
        max_w = max(t.window for t in config.join.tasks)
        self._ttl_ms = max_h + max_w + 3_600_000  # state outlives nothing beyond the horizon (+ margin)
        self.finished_input = False
        self._num_partitions = 0
        self.first_message_at: float | None = None
        self.last_message_at: float | None = None
        self._cpu_first = self._cpu_last = 0.0  # process CPU time (all threads) over the same span
        self._failed = False  # an unexpected error: in-memory state may be half-applied, never checkpoint it

    # -- lifecycle --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current batch, flush, checkpoint and return (safe from a signal handler)."""
        self._stop.set()

    def connect(self) -> None:
        """Wait for Redis and Kafka (``local.start_wait``), check Redis's durability and the topics; raise
        RuntimeUnavailable with one line."""
        cfg = self.config
        redis_state = RedisState(cfg.redis, cfg.redis.key_prefix, cfg.kafka.group_id, self._ttl_ms)
        try:
            self._check_services(redis_state)
        except BaseException:
            redis_state.close()
            raise
        self._redis = redis_state
        # What the trainer must agree with (its horizon, its dedup): read by the sidecar at its start.
        publish_task_contract(
            redis_state.client,
            cfg.join.tasks,
            self.sample_topics,
            published_by=f"sample-join (group {cfg.kafka.group_id})",
            log=log,
        )
        assignment = self._assignment = Assignment(
            redis_state,
            self.join,
            self.inputs,
            self.clock,
            self.metrics,
            str(cfg.kafka.consumer.get("auto.offset.reset", "earliest")),
            lambda: self.checkpoint(wait=True),
            cfg.kafka.group_id,
            cfg.checkpoint.on_missing,
        )
        self.shards = assignment.shards
        self._checkpointer = RedisCheckpointer(redis_state, self.metrics, assignment.on_fenced, self._on_checkpointed)
        rdkafka_log = logging.getLogger("rdkafka")
        bootstrap = cfg.kafka.bootstrap_servers
        consumer = consumer_settings(bootstrap, cfg.kafka.group_id, cfg.kafka.client_settings("consumer"))
        self._consumer = assignment.consumer = Consumer({**consumer, "logger": rdkafka_log})
        topics = cfg.kafka.topics
        self._sink = KafkaSink(
            {**producer_settings(bootstrap, cfg.kafka.client_settings("producer")), "logger": rdkafka_log},
            self.wire,
            self.sample_topics,
            topics.unmatched,
            topics.deadletter,
            self.metrics.counts,
        )

    def _check_services(self, redis_state: RedisState) -> None:
        """The first contact with both services, as the trainer's: a bounded visible wait for each
        (common.services), then Redis's eviction and persistence settings, then the topics."""
        cfg = self.config
        url, bootstrap, admin = cfg.redis.url, cfg.kafka.bootstrap_servers, cfg.kafka.client_settings("admin")
        wait_s = cfg.local.start_wait / 1000.0
        kafka_deadline = 0.0

        def ping_redis() -> None:
            try:
                redis_state.ping()
            except redis.AuthenticationError as exc:  # (a ConnectionError, but waiting will not fix it)
                raise RuntimeUnavailable(f"Redis at {url} refused the credentials: {one_line(exc)}") from exc

        def ask_kafka() -> None:
            # one metadata request waits (librdkafka retrying) up to 5 s, never past the start-up wait
            probe_s = min(5.0, max(0.5, kafka_deadline - time.monotonic()))
            try:
                topic_partitions(bootstrap, [], probe_s, admin)
            except KafkaException as exc:
                raise _KafkaDown(kafka_error_text(exc)) from exc

        try:
            redis_down = (redis.ConnectionError, redis.TimeoutError)
            wait_until_reachable(ping_redis, f"Redis at {url}", wait_s, log, redis_down)
            check_redis_durability(redis_state.client, url, log)
            kafka_deadline = time.monotonic() + wait_s
            wait_until_reachable(ask_kafka, f"Kafka at {bootstrap}", wait_s, log, (_KafkaDown,))
        except ServiceError as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        except redis.RedisError as exc:
            raise RuntimeUnavailable(f"Redis at {url} failed at start: {one_line(exc)}") from exc
        self._num_partitions = check_topics(bootstrap, self.inputs, self.outputs, admin)

    def run(self) -> RunSummary:
        started = self.clock()
        if self._consumer is None:
            self.connect()
        # The state is many long-lived small objects and the hot path allocates many short-lived
        # ones: collect the young generation less often (a few % of CPU), restored on return.
        gc_thresholds = gc.get_threshold()
        gc.set_threshold(GC_THRESHOLD, *gc_thresholds[1:])
        try:
            self._loop()
            self.checkpoint(wait=True)
        except BaseException:
            self._failed = True
            raise
        finally:
            gc.set_threshold(*gc_thresholds)
            gc.unfreeze()
            self._close()
        return self._summary(started)

    def _loop(self) -> None:
        consumer, metrics, cfg = self._consumer, self.metrics, self.config
        assert self._sink is not None
        sink = self._sink
        port = cfg.metrics.port
        if port is not None:
            port = metrics.serve(port, cfg.metrics.host)
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
        assert self._assignment is not None
        a = self._assignment
        consumer.subscribe(self.inputs, on_assign=a.on_assign, on_revoke=a.on_revoke, on_lost=a.on_lost)
        interval_s = cfg.checkpoint.interval / 1000.0
        exit_idle_s = None if cfg.local.exit_when_idle is None else cfg.local.exit_when_idle / 1000.0
        now = self.clock()
        next_checkpoint = now + interval_s
        next_idle_check = now + IDLE_CHECK_S
        next_publish = now + PUBLISH_S
        idle_since: float | None = None  # bounded mode: since when consume() has returned no record
        next_end_check = now
        process = self._process
        while not self._stop.is_set():
            messages = consumer.consume(POLL_BATCH, POLL_TIMEOUT_S)
            now = self.clock()
            got_data = False
            if messages:
                got_data = process(messages)
                sink.poll()
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
                        shard.fire()
                        self._emit(shard)
            if got_data:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            if now >= next_checkpoint:
                self.checkpoint()
                # The state is long-lived and (almost) never cyclic: take what exists now out of
                # the cyclic collector's scans (a full collection over it pauses ~100 ms per 200k
                # objects); refcounting still frees it when it goes. Only at checkpoints: freezing
                # after every batch saved ~1% of instructions, but would keep any cycle alive at a
                # batch's end out of the collector's reach for the rest of the run.
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
                if self._assignment.finish_bounded(self._num_partitions, self._emit):  # type: ignore[union-attr]
                    self.finished_input = True
                    return

    def _summary(self, started: float) -> RunSummary:
        self.metrics.publish()
        summary = RunSummary.of(
            self.metrics.totals,
            state_bytes_per_pending_impression=self.last_bytes_per_impression,
            seconds=round(self.clock() - started, 3),
            active_seconds=round((self.last_message_at or 0.0) - (self.first_message_at or 0.0), 3),
            active_cpu_seconds=round(self._cpu_last - self._cpu_first, 3),
            finished_input=self.finished_input,
            over_cap=dict(self.join.over_cap),
        )
        log.info("embedded runtime stopped", extra=summary.to_json())
        return summary

    @property
    def last_bytes_per_impression(self) -> float | None:
        return None if self._checkpointer is None else self._checkpointer.last_bytes_per_impression

    def _close(self) -> None:
        checkpointer = self._checkpointer
        if checkpointer is not None and checkpointer.has_write_in_flight() and self._failed:
            # a consistent earlier snapshot: let it land, but an error here must not hide the first one
            try:
                checkpointer.await_write()
            except Exception as exc:
                log.warning("last checkpoint write failed", extra={"error": one_line(exc)})
        if self._consumer is not None:
            if self._assignment is not None:
                self._assignment.consumer = None
            try:
                self._consumer.close()  # revokes (our callback checkpoints, which is cheap by now)
            except Exception as exc:
                log.warning("closing the consumer failed", extra={"error": one_line(exc)})
            self._consumer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        if checkpointer is not None:
            checkpointer.close()
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        self.metrics.close()

    # -- records ----------------------------------------------------------------------------------

    def _process(self, messages: list[Any]) -> bool:
        """Process one consumed batch (the hot path); returns whether it held any record."""
        shards = self.shards
        decode = self.wire.decode_event
        deadletter = self._sink.deadletter  # type: ignore[union-attr]
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
                event = decode(msg.value())
            except Exception as exc:  # undecodable or invalid: dead letter, and go on
                deadletter(msg, one_line(exc))
                continue
            shard.process(topic, event)
        if not touched:
            return False
        now = self.clock()
        for p, topic in touched:
            shard = shards.get(p)
            if shard is not None:
                shard.ended = False
                shard.watermark.touch(topic, now)
        for shard in shards.values():
            self._emit(shard)
        return True

    def _emit(self, shard: Shard) -> None:
        """Hand a shard's outputs to the sink; count its ignored label types."""
        runner = shard.runner
        if runner.samples or runner.unmatched:
            self._sink.emit(runner.drain())  # type: ignore[union-attr]
        if runner.ignored_label_types:
            self.metrics.counts.ignored.update(runner.ignored_label_types)
            runner.ignored_label_types.clear()

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

    # -- checkpoints ------------------------------------------------------------------------------

    def checkpoint(self, wait: bool = False) -> None:
        """Flush the outputs, then have every shard's dirty state, offsets and watermark written to
        Redis atomically (``wait=True``: return once written)."""
        if self._checkpointer is None or self._sink is None or self._failed:
            return
        for shard in self.shards.values():
            self._emit(shard)
        self._checkpointer.checkpoint(self.shards, self._sink, wait=wait)

    def _on_checkpointed(self, offsets: list[tuple[str, int, int]]) -> None:
        """A checkpoint is in Redis: commit its offsets to Kafka too, so the group's committed offsets
        follow the checkpoints (lag monitoring, and how a lost checkpoint is told from a first start);
        resuming reads the checkpoint's offsets, never these."""
        gauge_shards(self.metrics, self.shards)
        if self._consumer is None or not offsets:
            return
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for t, p, o in offsets], asynchronous=True)
        except KafkaException as exc:
            log.debug("offset commit failed (the next checkpoint commits again)", extra={"error": one_line(exc)})


class _KafkaDown(Exception):
    """Kafka did not answer a metadata request at start (its readable text)."""


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
