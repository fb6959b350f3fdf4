"""The sidecar's Kafka side: the ``samples.<task>`` consumer, decoding, and the dead letter.

One trainer consumes a model's samples topic (all its partitions). It starts each partition at the
offset its checkpoint recorded (the beginning without one): Kafka's committed offsets are written
after each checkpoint, for monitoring and tooling, and never read back for correctness. A value that
does not decode as a valid ``Sample`` goes to ``deadletter`` with the original key and bytes and the
headers the join uses (``error``, ``source_topic``, ``source_partition``, ``source_offset``).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from common.services import one_line
from schemas.confluent import ConfluentCodec, RegistryError
from schemas.deadletter import deadletter_headers
from trainer.config import SidecarConfig
from trainer.samples import BadRecord, Sample, SampleTable, decode_sample
from trainer.sidecar.errors import SidecarError, Unavailable

if TYPE_CHECKING:
    from trainer.features import PreparedTable

log = logging.getLogger("trainer.sidecar")

# librdkafka's own log lines (connection refused while the broker restarts, ...) stay at debug.
_RDKAFKA = logging.getLogger("trainer.sidecar.rdkafka")
_RDKAFKA.setLevel(logging.ERROR)


@dataclass(slots=True)
class Decoded:
    """One consumed message: its sample, or the reason it is not one."""

    partition: int
    offset: int
    sample: Sample | None
    error: str | None
    prepared: tuple[PreparedTable, int] | None = None  # the table and row of its prepared features


class SampleSource:
    def __init__(self, config: SidecarConfig, start_offsets: Callable[[], dict[int, int]]):
        self.config = config
        self.topic = config.topic
        self._start_offsets = start_offsets
        try:  # single_object: the schemas codec; confluent: the framing over the registry
            self._codec = config.kafka.wire.codec()
        except RegistryError as exc:
            raise SidecarError(str(exc)) from exc
        kafka = config.kafka  # its consumer / producer settings win over these
        consumer = {
            "group.id": kafka.group_id,
            **kafka.pinned_consumer_settings(),  # manual offsets, end-of-partition events
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "max.poll.interval.ms": 300_000,
            "session.timeout.ms": 6_000,
            "socket.connection.setup.timeout.ms": 5_000,
        }
        producer = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}
        self.consumer = Consumer({**kafka.client_settings("consumer", consumer), "logger": _RDKAFKA})
        self.producer = Producer({**kafka.client_settings("producer", producer), "logger": _RDKAFKA})
        self.assigned: set[int] = set()
        self.assigned_now: frozenset[int] = frozenset()  # a copy other threads can read
        self.at_eof: dict[int, bool] = {}
        self.positions: dict[int, int] = {}  # partition -> next offset consumed (not yet trained, maybe)
        self.deadlettered = 0

    def check(self, timeout_s: float) -> None:
        """Fail fast with one line when the broker is unreachable or the topic does not exist."""
        try:
            meta = self.consumer.list_topics(self.topic, timeout=timeout_s)
        except KafkaException as exc:
            raise Unavailable(f"cannot reach Kafka at {self.config.kafka.bootstrap_servers}: {one_line(exc)}") from exc
        info = meta.topics.get(self.topic)
        if info is None or info.error is not None or not info.partitions:
            raise SidecarError(f"topic {self.topic} does not exist on {self.config.kafka.bootstrap_servers}")
        self._check_registry()

    def _check_registry(self) -> None:
        """With the confluent framing the registry must answer too: otherwise every sample would go to
        the dead letter (a transient Unavailable, so the start-up wait covers a registry still starting)."""
        if isinstance(self._codec, ConfluentCodec):
            try:
                self._codec.check()
            except RegistryError as exc:
                raise Unavailable(str(exc)) from exc

    def subscribe(self) -> None:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        starts = self._start_offsets()
        for tp in partitions:
            tp.offset = starts.get(tp.partition, OFFSET_BEGINNING)
            self.assigned.add(tp.partition)
            self.at_eof[tp.partition] = False
        self.assigned_now = frozenset(self.assigned)
        consumer.assign(partitions)
        log.info("partitions assigned", extra={"offsets": {tp.partition: tp.offset for tp in partitions}})

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned.discard(tp.partition)
            self.at_eof.pop(tp.partition, None)
        self.assigned_now = frozenset(self.assigned)

    @property
    def drained(self) -> bool:
        """Every assigned partition has reported its end (and nothing arrived after)."""
        return bool(self.assigned) and all(self.at_eof.get(p, False) for p in self.assigned)

    def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Up to ``max_messages`` messages as they came (the client waits without the GIL)."""
        return self.consumer.consume(max_messages, timeout_s)

    def decode(self, messages: list[Message]) -> list[Decoded]:
        """The fetched ``messages`` decoded; bad ones are dead-lettered on the way."""
        out: list[Decoded] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._on_error(msg, err)
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            self.at_eof[partition] = False
            self.positions[partition] = offset + 1
            try:
                out.append(Decoded(partition, offset, decode_sample(msg.value(), self._codec), None))
            except BadRecord as exc:
                reason = " ".join(str(exc).split())
                self._deadletter(msg, reason)
                out.append(Decoded(partition, offset, None, reason))
        return out

    def _on_error(self, msg: Message, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            self.at_eof[msg.partition() or 0] = True
            return
        if err.fatal():
            raise SidecarError(f"Kafka consumer failed: {err.str()}")
        log.warning("kafka consumer error (retrying)", extra={"error": err.str()})

    def _deadletter(self, msg: Message, reason: str) -> None:
        headers: Any = deadletter_headers(reason, msg.topic() or self.topic, msg.partition() or 0, msg.offset() or 0)
        while True:
            try:
                self.producer.produce(
                    self.config.kafka.deadletter_topic, msg.value() or b"", msg.key(), headers=headers
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)
        self.deadlettered += 1
        log.warning(
            "dead-lettered a record",
            extra={"source_partition": msg.partition(), "source_offset": msg.offset(), "error": reason},
        )

    def flush(self, deadline: float) -> None:
        """Deliver the dead letters produced so far (before a checkpoint covers their offsets)."""
        while self.producer.flush(1.0) > 0:
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"cannot deliver dead letters to {self.config.kafka.deadletter_topic} on "
                    f"{self.config.kafka.bootstrap_servers}"
                )
            log.warning("dead letters not delivered yet (broker unreachable?); retrying")

    def commit(self, offsets: dict[int, int], wait: bool) -> bool:
        """Commit checkpointed offsets to Kafka; False (and a warning) when the broker cannot take them.
        Call it from the thread that polls (see :class:`Prefetcher`), or once polling has stopped."""
        if not offsets:
            return True
        try:
            partitions = [TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
            if wait:
                self.consumer.commit(offsets=partitions, asynchronous=False)
            else:
                self.consumer.commit(offsets=partitions, asynchronous=True)
            return True
        except KafkaException as exc:
            log.warning("offset commit failed; the next checkpoint commits again", extra={"error": one_line(exc)})
            return False

    def lag(self) -> dict[int, int]:
        """Messages behind the end of each assigned partition (from the last fetch's watermarks)."""
        out = {}
        for p in sorted(self.assigned):
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=0.5, cached=True)
            except KafkaException:
                continue
            if high >= 0 and p in self.positions:
                out[p] = max(0, high - self.positions[p])
        return out

    def close(self) -> None:
        try:
            self.producer.flush(5.0)
        finally:
            self.consumer.close()


class Prefetcher:
    """Polls and decodes on a thread of its own while the main thread trains (TensorFlow releases the
    GIL during a step, so decoding overlaps it). Once the trainer has said how (:meth:`prepare_with`),
    it also prepares each poll's features (what does not depend on the vocabularies: hashing, the
    dense columns). Only that happens here: dedup, batching, the vocabularies and the offsets a
    checkpoint records stay with the trainer, so prefetched messages that were never trained are
    simply read again after a restart.

    Every other call on the consumer is made from this thread too (the client blocks a commit or a
    watermark query made beside a running ``consume()``): the trainer hands over the offsets to
    commit, and reads the lag measured here.

    Decoding and preparing run in Python, and so does the trainer between its steps: when both want
    the GIL at once, the trainer's next step waits for the poller (decoding at any time made the
    benchmark's Kafka side about a tenth slower, docs/performance.md). So the poller fetches at any
    time (the client waits without the GIL) but decodes only inside the trainer's *windows*, the
    spans in which its thread runs no Python: a wait in :meth:`get`, and whatever the trainer wraps
    in :meth:`window` (the train step)."""

    LAG_EVERY_S = 1.0
    # The trainer's thread gives up the GIL at every TensorFlow call; with Python's default 5 ms switch
    # interval it would then wait up to 5 ms to get it back from a decoding poller, several times a batch.
    SWITCH_INTERVAL_S = 0.0005

    def __init__(self, source: SampleSource, max_messages: int, poll_s: float, depth: int = 4):
        self.source = source
        self.lag: dict[int, int] = {}
        self._queue: queue.Queue[list[Decoded]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._window = threading.Event()  # set while the trainer's thread runs no Python
        self._error: BaseException | None = None
        self._to_commit: dict[int, int] | None = None
        self._lock = threading.Lock()
        self._switch_interval: float | None = None  # the interpreter's, restored by stop()
        self._prepare: Callable[[SampleTable], PreparedTable] | None = None
        self._busy = False  # a fetch is being decoded and queued (what it holds is in neither place)
        self._thread = threading.Thread(
            target=self._run, args=(max_messages, poll_s), name="sample-prefetch", daemon=True
        )

    def start(self) -> None:
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, self.SWITCH_INTERVAL_S))
        self._thread.start()

    def prepare_with(self, prepare: Callable[[SampleTable], PreparedTable]) -> None:
        """Prepare the samples of the next polls with ``prepare`` (a feature encoder's, which reads
        only its spec: safe beside training)."""
        self._prepare = prepare

    @contextmanager
    def window(self) -> Iterator[None]:
        """Let the poller decode while the ``with`` body runs: wrap calls that release the GIL for
        most of their time (a TensorFlow step)."""
        self._window.set()
        try:
            yield
        finally:
            self._window.clear()

    def _await_window(self) -> bool:
        """Wait for the trainer's next window; False once stopping."""
        while not self._window.wait(0.05):
            if self._stop.is_set():
                return False
        return True

    def commit(self, offsets: dict[int, int]) -> None:
        """Commit ``offsets`` to Kafka from the polling thread (soon, without waiting)."""
        with self._lock:
            self._to_commit = dict(offsets)

    def _run(self, max_messages: int, poll_s: float) -> None:
        next_lag = 0.0
        try:
            while not self._stop.is_set():
                with self._lock:
                    offsets, self._to_commit = self._to_commit, None
                if offsets:
                    self.source.commit(offsets, wait=False)
                if time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + self.LAG_EVERY_S
                    self.lag = self.source.lag()
                fetched = self.source.fetch(max_messages, poll_s)
                if not fetched:
                    continue
                self._busy = True
                try:
                    self._hand_over(fetched)
                finally:
                    self._busy = False
        except BaseException as exc:  # handed to the trainer's thread by get()
            self._error = exc

    def _hand_over(self, fetched: list[Message]) -> None:
        """Decode (and prepare) ``fetched`` in the trainer's windows and queue it."""
        if not self._await_window():
            return
        decoded = self.source.decode(fetched)
        prepare = self._prepare
        if prepare is not None and self._await_window():
            self._prepare_rows(decoded, prepare)
        while decoded and not self._stop.is_set():
            try:
                self._queue.put(decoded, timeout=0.1)
                return
            except queue.Full:
                continue

    def caught_up(self, partition: int) -> bool:
        """``partition`` has reported its end and nothing read from it waits to be handed over (the
        order of the reads matters: the end is recorded while a fetch is decoded, before it is queued)."""
        return self.source.at_eof.get(partition, False) and not self._busy and self._queue.empty()

    @staticmethod
    def _prepare_rows(decoded: list[Decoded], prepare: Callable[[SampleTable], PreparedTable]) -> None:
        good = [(d, d.sample) for d in decoded if d.sample is not None]
        if good:
            prepared = prepare(SampleTable([sample for _, sample in good]))
            for row, (d, _) in enumerate(good):
                d.prepared = (prepared, row)

    def get(self, timeout_s: float) -> list[Decoded]:
        """The next polled messages, or [] after ``timeout_s``; re-raises the poller's error."""
        try:
            with self.window():
                return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            if self._error is not None:
                raise self._error from None
            return []

    @property
    def drained(self) -> bool:
        return self._queue.empty() and self.source.drained

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None
