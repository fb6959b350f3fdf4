"""The Confluent Schema Registry framing of the same records, for deployments that run a registry.

A message is the magic byte ``0x00``, the writer schema's registry id (4 bytes, big-endian), then the
Avro binary body: the framing of Confluent's serializers. Only the id <-> schema mapping comes from
the registry, through confluent-kafka's ``SchemaRegistryClient``; the body is written and read by the
project's codec (schemas/codec.py: its native decoder, its schema resolution), so both framings decode
to the same records, and a reader configured for this framing still reads the single-object messages
already in a topic (told apart by their first byte: ``0x00`` here, ``0xC3`` there).

Writing: each record's current schema (its .avsc) is registered under its topic's subject
(TopicNameStrategy: ``<topic>-value``), after the subject's compatibility level is set to the one the
project's gate enforces for that record (schemas/compat.yaml), so the registry refuses what
``python -m schemas check`` would. Reading: the writer schema of an id is fetched once and kept; a
schema the project has released or defines is read through the codec's reader of that version, any
other (registered by another producer) is resolved to the current schema as Avro resolves it. An
unknown id, a registry that fails to answer, or a schema that is not one of the project's records is a
:class:`SchemaIdError` naming the id (a dead letter with its reason in the streaming readers), asked
again at most every ``RETRY_FAILED_S``.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, overload

import fastavro
from fastavro.schema import to_parsing_canonical_form

from .codec import Codec, _record_encoder, _show
from .compat import load_compat_config
from .errors import BadMagic, DecodeError, SchemaError, TruncatedMessage
from .registry import SchemaSet, SchemaVersion, crc64_avro, short_name

MAGIC = b"\x00"
HEADER_SIZE = 5  # magic (1) + schema id (4)
RETRY_FAILED_S = 30.0  # an id the registry did not give is asked again after this long


class RegistryError(SchemaError):
    """The registry cannot be reached, or refused to register a schema or to set a subject's level."""


class SchemaIdError(DecodeError):
    """A Confluent-framed message whose schema id gives no record this project reads: unknown to the
    registry, the registry failing to answer, or a schema of another record or format."""


def subject(topic: str) -> str:
    """The subject of a topic's values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"


def registry_client(url: str, auth: str | None = None) -> Any:
    """The process's confluent-kafka client of the registry at ``url`` (one per url and credentials,
    so its caches, and a ``mock://`` registry's contents, are shared by every user in the process)."""
    return _client(url, auth)


@functools.cache
def _client(url: str, auth: str | None) -> Any:
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:
        raise RegistryError(
            f"the confluent wire format needs confluent-kafka's schema registry client, which does not import "
            f"here: {exc} (install confluent-kafka[schemaregistry])"
        ) from exc
    conf: dict[str, Any] = {"url": url}
    if auth is not None:
        conf["basic.auth.user.info"] = auth
    try:
        return SchemaRegistryClient.new_client(conf)
    except (ValueError, TypeError) as exc:
        raise RegistryError(f"cannot use the schema registry at {url}: {_one_line(exc)}") from exc


@dataclass(frozen=True)
class RegistryVersion(SchemaVersion):
    """A writer schema found in the registry that is none of the versions kept in schemas/versions."""

    schema_id: int = 0

    @property
    def label(self) -> str:
        return f"registry id {self.schema_id}"


# What a message's header gives: the codec that reads it, the writer's fingerprint there, its name in errors.
_Writer = tuple[Codec, bytes, str]


class ConfluentCodec:
    """Encode and decode a :class:`~schemas.codec.Codec`'s records in the Confluent framing (and decode
    single-object messages as that codec does). Build with :meth:`connect`; safe to share between
    threads (what it learns from the registry is only ever added)."""

    def __init__(self, codec: Codec, client: Any, url: str) -> None:
        self.codec = codec
        self.client = client
        self.url = url
        self._compat = load_compat_config(codec.schema_set.root, list(codec.records))
        self._ids: dict[tuple[str, str], int] = {}  # (topic, record) -> id of the record's current schema
        self._encoders: dict[tuple[str, str], Callable[[dict[str, Any]], bytes]] = {}
        self._writers: dict[bytes, _Writer] = {}  # message header -> how to read the body
        self._failed: dict[int, tuple[float, str]] = {}  # id -> (when to ask again, why it failed)
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, url: str, auth: str | None = None, codec: Codec | None = None) -> ConfluentCodec:
        """The framing over ``codec`` (the package's by default) with the process's client of the
        registry at ``url`` (``user:password`` basic ``auth``). Nothing is asked of the registry yet."""
        return cls(codec or Codec.default(), registry_client(url, auth), url)

    def fingerprint(self, name: str) -> bytes:
        """The fingerprint of ``name``'s current schema (what every decoded record follows), as the codec's."""
        return self.codec.fingerprint(name)

    def schema(self, name: str) -> dict[str, Any]:
        """``name``'s current schema as written in its .avsc file, as the codec's."""
        return self.codec.schema(name)

    # ---------------------------------------------------------------- the registry

    def check(self) -> None:
        """Ask the registry something cheap (its subjects): :class:`RegistryError` with one line when it
        does not answer, so that a deployment fails at start rather than dead-lettering every message."""
        try:
            self.client.get_subjects()
        except Exception as exc:  # the client raises SchemaRegistryError, httpx's errors, ...
            raise RegistryError(f"the schema registry at {self.url} does not answer: {_one_line(exc)}") from exc

    def register(self, topic: str, record: str) -> int:
        """The id of ``record``'s current schema under ``topic``'s subject, registered there if it is not
        yet (the subject's compatibility level set to the gate's first). Asked once per topic and record."""
        key = (topic, record)
        known = self._ids.get(key)
        if known is not None:
            return known
        from confluent_kafka.schema_registry import Schema

        name = subject(topic)
        self._set_compatibility(name, self._compat.level(record))
        text = json.dumps(self.codec.schema(record), separators=(",", ":"))
        try:
            schema_id = int(self.client.register_schema(name, Schema(text, "AVRO")))
        except Exception as exc:
            raise RegistryError(
                f"the schema registry at {self.url} did not register {record} under {name}: {_one_line(exc)}"
            ) from exc
        self._ids[key] = schema_id
        return schema_id

    def _set_compatibility(self, name: str, level: str) -> None:
        """Make the subject's compatibility level the gate's (schemas/compat.yaml), unless it already is."""
        from confluent_kafka.schema_registry import ConfigCompatibilityLevel, SchemaRegistryError, ServerConfig

        current: str | None = None
        try:
            config = self.client.get_config(name)
            found = getattr(config, "compatibility_level", None) or getattr(config, "compatibility", None)
            current = str(found) if found is not None else None
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:  # 404: no level of its own yet
                raise RegistryError(
                    f"the schema registry at {self.url} did not give the compatibility level of {name}: "
                    f"{_one_line(exc)}"
                ) from exc
        except Exception as exc:
            raise RegistryError(f"the schema registry at {self.url} does not answer: {_one_line(exc)}") from exc
        if current == level:
            return
        try:
            self.client.set_config(name, ServerConfig(compatibility=ConfigCompatibilityLevel(level)))
        except Exception as exc:
            raise RegistryError(
                f"the schema registry at {self.url} did not set the compatibility of {name} to {level} (the "
                f"level schemas/compat.yaml enforces; it is {current or 'the registry default'}): {_one_line(exc)}"
            ) from exc

    # ---------------------------------------------------------------- encode

    def header(self, topic: str, record: str) -> bytes:
        """The 5 bytes every message of ``record`` written to ``topic`` starts with (registering it)."""
        return MAGIC + self.register(topic, record).to_bytes(4, "big")

    def encoder(self, topic: str, record: str) -> Callable[[dict[str, Any]], bytes]:
        """``record`` dict -> message bytes for ``topic``, without validation (built once per pair)."""
        key = (topic, record)
        encode = self._encoders.get(key)
        if encode is None:
            parsed = fastavro.parse_schema(self.codec.schema(record))
            encode = self._encoders[key] = _record_encoder(record, self.header(topic, record), parsed)
        return encode

    def encode(self, topic: str, record: str, value: dict[str, Any], *, validate: bool = False) -> bytes:
        """:meth:`Codec.encode <schemas.codec.Codec.encode>` in this framing, for ``topic``."""
        if validate:
            self.codec.validate(record, value)
        return self.encoder(topic, record)(value)

    # ---------------------------------------------------------------- decode

    @overload
    def decode(self, data: bytes | bytearray | memoryview) -> tuple[str, dict[str, Any]]: ...

    @overload
    def decode(self, data: bytes | bytearray | memoryview, expected: str) -> dict[str, Any]: ...

    def decode(
        self, data: bytes | bytearray | memoryview, expected: str | None = None
    ) -> tuple[str, dict[str, Any]] | dict[str, Any]:
        """A message of either framing -> ``(record name, dict in the current schema)`` (the dict only
        with ``expected``), as :meth:`Codec.decode <schemas.codec.Codec.decode>`."""
        try:
            head = data[:HEADER_SIZE]
            writer = self._writers.get(head if type(head) is bytes else bytes(head))
        except TypeError:
            raise DecodeError(f"expected bytes, got {type(data).__name__}") from None
        if writer is None:
            if data[:1] != MAGIC:
                return self._single_object(data, expected)
            writer = self._learn(data)
        codec, fingerprint, label = writer
        if expected is None:
            return codec.decode_body(fingerprint, data, HEADER_SIZE, None, label)
        return codec.decode_body(fingerprint, data, HEADER_SIZE, expected, label)

    def writer_fingerprint(self, header: bytes) -> bytes | None:
        """The writer schema's fingerprint of the messages that start with ``header`` (magic and id),
        once a message of that id has been decoded; None before (nothing is asked of the registry)."""
        writer = self._writers.get(header)
        return writer[1] if writer is not None else None

    def _single_object(
        self, data: bytes | bytearray | memoryview, expected: str | None
    ) -> tuple[str, dict[str, Any]] | dict[str, Any]:
        try:
            return self.codec.decode(data) if expected is None else self.codec.decode(data, expected)
        except BadMagic:
            raise BadMagic(
                f"message starts with neither the Confluent magic byte 00 nor the single-object marker c3 01: "
                f"got [{_show(data)}] ({len(data)} bytes)"
            ) from None

    def _learn(self, data: bytes | bytearray | memoryview) -> _Writer:
        """How to read the messages of ``data``'s schema id (asking the registry once)."""
        if len(data) < HEADER_SIZE:
            raise TruncatedMessage(
                f"message of {len(data)} bytes is shorter than the 5-byte Confluent header: [{_show(data)}]"
            )
        head = bytes(data[:HEADER_SIZE])
        schema_id = int.from_bytes(head[1:], "big")
        with self._lock:
            known = self._writers.get(head)
            if known is not None:
                return known
            failed = self._failed.get(schema_id)
            if failed is not None and time.monotonic() < failed[0]:
                raise SchemaIdError(failed[1])
            try:
                writer = self._writer(schema_id)
            except SchemaIdError as exc:
                self._failed[schema_id] = (time.monotonic() + RETRY_FAILED_S, str(exc))
                raise
            self._failed.pop(schema_id, None)
            self._writers[head] = writer
            return writer

    def _writer(self, schema_id: int) -> _Writer:
        """The codec, fingerprint and label that read the bodies written with registry id ``schema_id``."""
        from confluent_kafka.schema_registry import SchemaRegistryError

        where = f"schema id {schema_id}"
        try:
            found = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise SchemaIdError(
                    f"the schema registry at {self.url} has no {where} ({_one_line(exc)})"
                ) from exc
            raise SchemaIdError(
                f"the schema registry at {self.url} did not give {where}: {_one_line(exc)}"
            ) from exc
        except Exception as exc:  # httpx's transport errors once the client's retries are spent, ...
            raise SchemaIdError(
                f"the schema registry at {self.url} did not give {where}: {_one_line(exc)}"
            ) from exc
        kind = found.schema_type or "AVRO"
        if kind != "AVRO" or found.references:
            what = f"a {kind} schema" if kind != "AVRO" else "an Avro schema with references"
            raise SchemaIdError(f"{where} at {self.url} is {what}; the project's records are plain Avro")
        try:
            schema = json.loads(found.schema_str or "")
            parsed = fastavro.parse_schema(schema)
        except Exception as exc:
            raise SchemaIdError(f"{where} at {self.url} is not a valid Avro schema: {_one_line(exc)}") from exc
        is_record = isinstance(schema, dict) and schema.get("type") == "record"
        name = short_name(schema) if is_record else None
        if name not in self.codec.records:
            what = f"the record {schema.get('name')}" if is_record else f"the Avro type {json.dumps(schema)[:60]}"
            raise SchemaIdError(
                f"{where} at {self.url} is {what}, not one of the records {', '.join(self.codec.records)}"
            )
        canonical = to_parsing_canonical_form(parsed)
        fingerprint = crc64_avro(canonical.encode("utf-8"))
        known = self.codec.known_fingerprints().get(fingerprint)
        if known is not None:
            return self.codec, fingerprint, f"{where}, {known[1]}"
        version = RegistryVersion(name, 0, self.codec.schema_set.root, schema, canonical, fingerprint, schema_id)
        try:
            return _with_version(self.codec, version), fingerprint, where
        except Exception as exc:
            raise SchemaIdError(
                f"{where} at {self.url} ({name}) cannot be read as the current {name}: {_one_line(exc)}"
            ) from exc


def _with_version(codec: Codec, version: RegistryVersion) -> Codec:
    """A codec that also reads ``version`` (resolved to the current schema of its record)."""
    schema_set = codec.schema_set
    record = schema_set.record(version.record)
    records = {**schema_set.records, record.name: replace(record, released=(*record.released, version))}
    return Codec(
        SchemaSet(root=schema_set.root, records=records),
        fast_resolution=codec._fast_resolution,
        native_decoder=codec._native_decoder,
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "ConfluentCodec",
    "RegistryError",
    "RegistryVersion",
    "SchemaIdError",
    "registry_client",
    "subject",
]
