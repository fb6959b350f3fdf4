"""Kafka plumbing of the embedded runtime and the generator: wire format, client settings, topics.

Values are Avro single-object encoded with the ``schemas`` codec (docs/wire-format.md). Input events decode
to the join core's event types through their docs/wire-format.md JSON form (so the same validation applies as
in replay); samples and unmatched labels encode from their JSON form, which is their Avro form.
"""

from __future__ import annotations

import logging
from typing import Any

from jobs.core.events import BadEvent, Event, event_from_json
from schemas.codec import Codec
from schemas.records import EVENT_TYPE_OF as TYPE_OF_RECORD
from schemas.records import EVENT_TYPES as RECORD_OF_TYPE

# Fast consumer-group joins (docs/architecture.md): the broker waits for the rebalance timeout otherwise.
FAST_GROUP_SETTINGS: dict[str, Any] = {"max.poll.interval.ms": 10_000, "session.timeout.ms": 6_000}

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

    def decode_event(self, data: bytes | None) -> Event:
        """An input message's value -> event; raises schemas' DecodeError or BadEvent with the reason."""
        if data is None:
            raise BadEvent("empty message (null value)")
        name, record = self._decode(data)
        kind = TYPE_OF_RECORD.get(name)
        if kind is None:
            raise BadEvent(f"a {name} record is not an input event (expected Impression, FeatureSnapshot or Label)")
        record["type"] = kind
        return event_from_json(record)

    def encode_event_json(self, event: dict[str, Any]) -> bytes:
        """An event's JSON form (with ``type``) -> Avro single-object bytes."""
        return self._encode(RECORD_OF_TYPE[event["type"]], event)

    def encode_sample(self, sample_json: dict[str, Any]) -> bytes:
        return self._encode("Sample", sample_json)

    def encode_unmatched(self, unmatched_json: dict[str, Any]) -> bytes:
        return self._encode("UnmatchedLabel", unmatched_json)


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


def topic_partitions(bootstrap: str, topics: list[str], timeout_s: float = 5.0) -> dict[str, int | None]:
    """Partition count of each topic (None when it does not exist). Raises KafkaException when unreachable."""
    from confluent_kafka.admin import AdminClient

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 3_000}
    conf["logger"] = _QUIET
    admin = AdminClient(conf)
    meta = admin.list_topics(timeout=timeout_s)
    result: dict[str, int | None] = {}
    for topic in topics:
        info = meta.topics.get(topic)
        result[topic] = len(info.partitions) if info is not None and info.error is None else None
    return result


def ensure_topics(bootstrap: str, topics: list[str], partitions: int) -> list[str]:
    """Create the missing ones of ``topics`` with ``partitions`` partitions; returns the names created."""
    from infra.local import create_topics

    return create_topics(bootstrap, {t: (partitions, 0) for t in topics})


def kafka_error_text(exc: BaseException) -> str:
    """The readable part of a KafkaException (its KafkaError's text), on one line."""
    err: Any = exc.args[0] if exc.args else None
    text = err.str() if hasattr(err, "str") else str(exc)
    return " ".join(text.split()) or type(exc).__name__
