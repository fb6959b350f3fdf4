"""Kafka plumbing of the embedded runtime, the Flink job and the generator: wire format, client
settings, topics.

Values are written and read by the one serde of the records (:class:`schemas.serde.Serde`, which the
trainer reads its samples with too), in the deployment's framing (``kafka.wire``: Avro single-object
encoding by default, or the Confluent Schema Registry framing). :class:`WireFormat` is the join's side
of it: input events decoded straight into the join core's event types, the core's samples written by
one encoder compiled from the Sample schema (the embedded runtime and Flink alike), unmatched labels
and events from their JSON forms, which are their Avro forms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jobs.config import KafkaConfig
from jobs.core.events import AVRO_BUILDERS, BadEvent, Event, event_from_avro
from jobs.core.join import Sample, UnmatchedLabel
from jobs.errors import JobError
from schemas.records import EVENT_TYPES as RECORD_OF_TYPE
from schemas.serde import Framing, Serde

if TYPE_CHECKING:
    from jobs.config import KafkaConfig, TaskConfig

# Fast consumer-group joins (docs/architecture.md): the broker waits for the rebalance timeout otherwise.
FAST_GROUP_SETTINGS: dict[str, Any] = {"max.poll.interval.ms": 10_000, "session.timeout.ms": 6_000}

log = logging.getLogger("jobs.runtime.kafka_io")


class RuntimeUnavailable(JobError):
    """Kafka or Redis cannot be reached (at start), or a topic is missing or not co-partitioned."""


# librdkafka's own log lines of a probe (connection refused, ...) would clutter a one-line error.
_QUIET = logging.getLogger("rdkafka.probe")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class WireFormat:
    """The join's records on Kafka, in one framing (built once; cheap per record).

    ``decode_event(value)``: an input message's value -> event; raises schemas' DecodeError or
    BadEvent with the reason. A message of an event's current schema is read by the native decoder
    straight into the event; anything else (another schema version, bytes it refuses, a value rule
    that fails) goes through the codec, which gives the event or the precise reason.
    ``encode_sample(sample)``: a join-core Sample -> bytes (the same bytes as the codec's for its
    JSON form).

    With the Confluent framing (a :class:`~schemas.confluent.ConfluentCodec`) each output record is
    written with the registry id of its schema under its topic's subject, registered at
    construction: ``samples`` (task -> samples topic), ``unmatched`` (its topic) and ``events``
    (event type, its JSON ``type`` -> topic, for a writer of events: the generator) name the topics
    written; input events of either framing are read.
    """

    decode_event: Callable[[bytes | None], Event]
    encode_sample: Callable[[Sample], bytes]
    _unmatched: Callable[[dict[str, Any]], bytes] | None
    _events: dict[str, Callable[[dict[str, Any]], bytes]]

    def __init__(
        self,
        framing: Framing | None = None,
        *,
        samples: Mapping[str, str] | None = None,
        unmatched: str | None = None,
        events: Mapping[str, str] | None = None,
    ) -> None:
        from schemas.confluent import RegistryError

        self.serde = serde = Serde(framing)
        self.codec = serde.codec
        reader = serde.reader(AVRO_BUILDERS, event_from_avro, empty=BadEvent)
        self.decode_event = reader.read
        self._decoders = reader.native  # header -> the native reader of an event's current schema
        try:
            if serde.per_topic:  # each topic's messages carry the registry id of its own subject
                by_task = {task: serde.object_encoder("Sample", topic) for task, topic in (samples or {}).items()}
                self.encode_sample = lambda sample: by_task[sample.task](sample)
                self._unmatched = serde.encoder("UnmatchedLabel", unmatched) if unmatched else None
                self._events = {kind: serde.encoder(RECORD_OF_TYPE[kind], t) for kind, t in (events or {}).items()}
            else:  # one encoder per record, whatever the topic
                self.encode_sample = serde.object_encoder("Sample")
                self._unmatched = serde.encoder("UnmatchedLabel")
                self._events = {kind: serde.encoder(record) for kind, record in RECORD_OF_TYPE.items()}
        except RegistryError as exc:
            raise RuntimeUnavailable(str(exc)) from exc

    def encode_event_json(self, event: dict[str, Any]) -> bytes:
        """An event's JSON form (with ``type``) -> bytes."""
        return self._events[event["type"]](event)

    def encode_unmatched(self, unmatched: UnmatchedLabel) -> bytes:
        """A join-core UnmatchedLabel -> bytes."""
        if self._unmatched is None:
            raise JobError("this wire format was built without the unmatched topic: it cannot write unmatched labels")
        return self._unmatched(unmatched.to_json())

    @staticmethod
    def for_join(kafka: KafkaConfig, tasks: tuple[TaskConfig, ...]) -> WireFormat:
        """The join's wire format (``kafka.wire``); for confluent, over the join's output topics
        (registering their schemas: RuntimeUnavailable with one line when the registry refuses)."""
        if kafka.wire.format == "single_object":
            return WireFormat()
        from schemas.confluent import RegistryError

        try:
            confluent = kafka.wire.codec()
        except RegistryError as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        samples = {t.name: kafka.topics.samples(t.name) for t in tasks}
        return WireFormat(confluent, samples=samples, unmatched=kafka.topics.unmatched)


_default: WireFormat | None = None


def event_json_to_wire(event: dict[str, Any]) -> bytes:
    """An event's JSON form -> Avro single-object bytes, with the package's schemas."""
    global _default
    if _default is None:
        _default = WireFormat()
    return _default.encode_event_json(event)


def consumer_settings(bootstrap: str, group_id: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Consumer settings of the runtime: manual offsets, co-partition-preserving assignment."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        **KafkaConfig.pinned_consumer_settings(),  # manual offsets, end-of-partition events, range
        "auto.offset.reset": "earliest",
        "socket.connection.setup.timeout.ms": 5_000,
        "fetch.wait.max.ms": 50,
        **FAST_GROUP_SETTINGS,
        **extra,
    }


def producer_settings(bootstrap: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Producer settings: idempotent, acks=all, small linger for freshness."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "socket.connection.setup.timeout.ms": 5_000,
        **extra,
    }


def topic_partitions(
    bootstrap: str, topics: list[str], timeout_s: float = 5.0, client: dict[str, Any] | None = None
) -> dict[str, int | None]:
    """Partition count of each topic (None when it does not exist). Raises KafkaException when unreachable."""
    from confluent_kafka.admin import AdminClient  # (imported here: replay needs no Kafka client)

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 3_000}
    conf.update(client or {})
    conf["logger"] = _QUIET
    admin = AdminClient(conf)
    meta = admin.list_topics(timeout=timeout_s)
    result: dict[str, int | None] = {}
    for topic in topics:
        info = meta.topics.get(topic)
        result[topic] = len(info.partitions) if info is not None and info.error is None else None
    return result


def check_topics(bootstrap: str, inputs: list[str], outputs: list[str], client: dict[str, Any] | None = None) -> int:
    """Check that the input topics exist and are co-partitioned, create missing output topics with
    as many partitions; returns the inputs' partition count. Raises RuntimeUnavailable (one line)."""
    from confluent_kafka import KafkaException

    try:
        counts = topic_partitions(bootstrap, inputs + outputs, client=client)
    except KafkaException as exc:
        raise RuntimeUnavailable(f"cannot reach Kafka at {bootstrap}: {kafka_error_text(exc)}") from exc
    missing = [t for t in inputs if counts[t] is None]
    if missing:
        raise RuntimeUnavailable(f"input topic(s) {', '.join(missing)} do not exist on {bootstrap}")
    sizes = {t: counts[t] for t in inputs}
    if len(set(sizes.values())) != 1:
        raise RuntimeUnavailable(f"input topics must be co-partitioned (same partition count), got {sizes}")
    partitions = next(iter(sizes.values())) or 0
    absent = [t for t in outputs if counts[t] is None]
    if absent:
        ensure_topics(bootstrap, absent, partitions or 1, client)
        log.info("created output topics", extra={"topics": absent, "partitions": partitions or 1})
    return partitions


def ensure_topics(
    bootstrap: str, topics: list[str], partitions: int, client: dict[str, Any] | None = None
) -> list[str]:
    """Create the missing ones of ``topics`` with ``partitions`` partitions; returns the names created."""
    from common.topics import create_topics

    return create_topics(bootstrap, {t: (partitions, 0) for t in topics}, client=client)


def kafka_error_text(exc: BaseException) -> str:
    """The readable part of a KafkaException (its KafkaError's text), on one line."""
    err: Any = exc.args[0] if exc.args else None
    text = err.str() if hasattr(err, "str") else str(exc)
    return " ".join(text.split()) or type(exc).__name__
