"""Kafka plumbing of the embedded runtime and the generator: wire format, client settings, topics.

Values are Avro single-object encoded with the ``schemas`` codec (docs/wire-format.md), or, where a
deployment chooses it (``kafka.wire.format: confluent``), in the Confluent Schema Registry framing
(:class:`ConfluentWireFormat`). Input events decode to the join core's event types through their
docs/wire-format.md JSON form (so the same validation applies as in replay); samples and unmatched
labels encode from their JSON form, which is their Avro form.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobs.core.events import AVRO_BUILDERS, BadEvent, Event, event_from_avro
from jobs.core.join import Sample, UnmatchedLabel
from jobs.errors import JobError
from schemas import native
from schemas.codec import HEADER_SIZE, MAGIC, Codec
from schemas.compiled import Unsupported, compile_encoder
from schemas.records import EVENT_TYPES as RECORD_OF_TYPE

if TYPE_CHECKING:
    from jobs.config import KafkaConfig, TaskConfig
    from schemas.confluent import ConfluentCodec

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
    """Encode and decode the runtime's records with one codec (built once; cheap per record)."""

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec = codec or Codec.default()
        self._encode = self.codec.encode
        self._decode = self.codec.decode
        self._encode_sample = _sample_encoder(
            self.codec, MAGIC + self.codec.fingerprint("Sample"), self.codec.encoder("Sample")
        )
        self._encode_unmatched = self.codec.encoder("UnmatchedLabel")
        self._decoders = _event_decoders(self.codec)

    def decode_event(self, data: bytes | None) -> Event:
        """An input message's value -> event; raises schemas' DecodeError or BadEvent with the reason.

        A message of an event's current schema is read by the native decoder straight into the event;
        anything else (another schema version, bytes it refuses, a value rule that fails) goes
        through the codec, which gives the event or the precise reason."""
        if data is None:
            raise BadEvent("empty message (null value)")
        decode = self._decoders.get(data[:HEADER_SIZE])
        if decode is not None:
            event = decode(data)
            if event is not None:
                return event
        return event_from_avro(*self._decode(data))

    def encode_event_json(self, event: dict[str, Any]) -> bytes:
        """An event's JSON form (with ``type``) -> Avro single-object bytes."""
        return self._encode(RECORD_OF_TYPE[event["type"]], event)

    def encode_sample(self, sample_json: dict[str, Any]) -> bytes:
        return self._encode("Sample", sample_json)

    def encode_unmatched(self, unmatched_json: dict[str, Any]) -> bytes:
        return self._encode("UnmatchedLabel", unmatched_json)

    def encode_sample_object(self, sample: Sample) -> bytes:
        """A join-core Sample -> Avro single-object bytes (the same bytes as the codec's)."""
        return self._encode_sample(sample)

    def encode_unmatched_object(self, unmatched: UnmatchedLabel) -> bytes:
        """A join-core UnmatchedLabel -> Avro single-object bytes."""
        return self._encode_unmatched(unmatched.to_json())

    @staticmethod
    def for_join(kafka: KafkaConfig, tasks: tuple[TaskConfig, ...]) -> WireFormat:
        """The join's wire format (``kafka.wire``): this class for single_object, so the default path is
        exactly what it was; :class:`ConfluentWireFormat` over the join's output topics for confluent
        (registering their schemas: RuntimeUnavailable with one line when the registry refuses)."""
        if kafka.wire.format == "single_object":
            return WireFormat()
        from schemas.confluent import ConfluentCodec, RegistryError

        try:
            confluent = kafka.wire.codec()
        except RegistryError as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        assert isinstance(confluent, ConfluentCodec)
        samples = {t.name: kafka.topics.samples(t.name) for t in tasks}
        return ConfluentWireFormat(confluent, samples=samples, unmatched=kafka.topics.unmatched)


class ConfluentWireFormat(WireFormat):
    """:class:`WireFormat` in the Confluent Schema Registry framing (schemas/confluent.py): each output
    record is written with the registry id of its schema under its topic's subject (registered at
    construction), input events of either framing are read. The current schema of each input event is
    read by the native decoder too, once a message has shown its registry id."""

    def __init__(
        self,
        confluent: ConfluentCodec,
        *,
        samples: dict[str, str] | None = None,
        unmatched: str | None = None,
        events: dict[str, str] | None = None,
    ) -> None:
        """``samples``: task -> samples topic; ``unmatched``: its topic; ``events``: event type (its
        JSON ``type``) -> topic, for a writer of events (the generator). Only these are written."""
        from schemas.confluent import HEADER_SIZE as CONFLUENT_HEADER_SIZE
        from schemas.confluent import RegistryError

        self.codec = confluent.codec
        self.confluent = confluent
        self._header_size = CONFLUENT_HEADER_SIZE
        self._decode = confluent.decode
        self._decoders = {}
        try:
            self._sample_json_encoders = {
                task: confluent.encoder(topic, "Sample") for task, topic in (samples or {}).items()
            }
            self._sample_encoders = {
                task: _sample_encoder(self.codec, confluent.header(topic, "Sample"), self._sample_json_encoders[task])
                for task, topic in (samples or {}).items()
            }
            self._unmatched_encoder = confluent.encoder(unmatched, "UnmatchedLabel") if unmatched else None
            self._event_encoders = {
                kind: confluent.encoder(topic, RECORD_OF_TYPE[kind]) for kind, topic in (events or {}).items()
            }
        except RegistryError as exc:
            raise RuntimeUnavailable(str(exc)) from exc

    def decode_event(self, data: bytes | None) -> Event:
        if data is None:
            raise BadEvent("empty message (null value)")
        decode = self._decoders.get(data[: self._header_size])
        if decode is not None:
            event = decode(data)
            if event is not None:
                return event
        name, record = self._decode(data)
        if data[:1] == b"\x00" and name in AVRO_BUILDERS:
            self._learn(bytes(data[: self._header_size]), name)
        return event_from_avro(name, record)

    def _learn(self, header: bytes, name: str) -> None:
        """Read the messages of this registry id natively from now on, if it is the event's current schema."""
        if header not in self._decoders and self.confluent.writer_fingerprint(header) == self.codec.fingerprint(name):
            read = native.fields_decoder(self.codec.schema(name), self._header_size)
            if read is not None:
                self._decoders[header] = _native_event_decoder(read, AVRO_BUILDERS[name])

    def encode_event_json(self, event: dict[str, Any]) -> bytes:
        return self._event_encoders[event["type"]](event)

    def encode_sample(self, sample_json: dict[str, Any]) -> bytes:
        return self._sample_json_encoders[sample_json["task"]](sample_json)

    def encode_unmatched(self, unmatched_json: dict[str, Any]) -> bytes:
        return self._unmatched(unmatched_json)

    def encode_sample_object(self, sample: Sample) -> bytes:
        return self._sample_encoders[sample.task](sample)

    def encode_unmatched_object(self, unmatched: UnmatchedLabel) -> bytes:
        return self._unmatched(unmatched.to_json())

    def _unmatched(self, unmatched_json: dict[str, Any]) -> bytes:
        if self._unmatched_encoder is None:
            raise JobError("this wire format was built without the unmatched topic: it cannot write unmatched labels")
        return self._unmatched_encoder(unmatched_json)


def _sample_encoder(
    codec: Codec, header: bytes, generic: Callable[[dict[str, Any]], bytes]
) -> Callable[[Sample], bytes]:
    """The Sample encoder compiled from the codec's current schema, writing ``header`` first (several
    times cheaper than the codec's generic writer), or ``generic`` (the same bytes from the JSON form)
    when the schema has fields it does not compile."""
    try:
        return compile_encoder(codec.schema("Sample"), header)
    except Unsupported as exc:
        log.warning("Sample encoded through the generic codec", extra={"reason": str(exc)})
        return lambda sample: generic(sample.to_json())


def _event_decoders(codec: Codec) -> dict[bytes, Callable[[bytes], Event | None]]:
    """Decoders of the input events' current schemas, by single-object header (marker and
    fingerprint: a message's first HEADER_SIZE bytes): the native body decoder's fields handed to the
    event's builder; None for bytes it refuses or a value rule that fails. Empty when the native
    decoder is not built (``schemas.native`` says so once): then every event goes through the codec."""
    decoders: dict[bytes, Callable[[bytes], Event | None]] = {}
    for name, build in AVRO_BUILDERS.items():
        read = native.fields_decoder(codec.schema(name), HEADER_SIZE)
        if read is not None:
            decoders[MAGIC + codec.fingerprint(name)] = _native_event_decoder(read, build)
    return decoders


def _native_event_decoder(
    read: Callable[[bytes], tuple[Any, ...]], build: Callable[..., Event | None]
) -> Callable[[bytes], Event | None]:
    """One event type's decoder: the record's fields in schema order, as the native decoder reads
    them, straight into ``build``; None for bytes it refuses."""
    malformed = native.Malformed

    def decode(data: bytes) -> Event | None:
        try:
            return build(*read(data))
        except malformed:
            return None

    return decode


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
        "enable.auto.commit": False,  # correctness comes from the Redis checkpoint's offsets
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        # range gives partition p of every subscribed topic to the same member (co-partitioning)
        "partition.assignment.strategy": "range",
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
