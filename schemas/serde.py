"""The one Kafka serializer/deserializer of the records, for both deployables (docs/wire-format.md).

A deployment frames its values one way (``kafka.wire`` in its config): Avro single-object encoding
(:class:`~schemas.codec.Codec`) or the Confluent Schema Registry framing
(:class:`~schemas.confluent.ConfluentCodec`, which also reads single-object messages). A
:class:`Serde` over either is what the join's runtimes (through ``jobs.runtime.kafka_io.WireFormat``:
the embedded runtime, Flink and the generator) and the trainer (``trainer.samples.decode_sample``)
write and read with, so one topic format has one route in and one route out:

- :meth:`Serde.encoder`: a record's Avro dict (its JSON form) -> bytes;
- :meth:`Serde.object_encoder`: an object with one attribute per field (the join core's Sample) ->
  the same bytes, through an encoder compiled from the record's schema (schemas/compiled.py);
- :meth:`Serde.reader`: bytes -> the caller's own value type: a message of a record's current schema
  is read by the native decoder straight into the caller's builder, anything else is decoded to a dict
  for the caller's fallback (which gives the value or the precise reason);
- :meth:`Serde.decode_valid`: bytes -> the record's dict, held to its contract (the pydantic model of
  :mod:`schemas.models`, by the fast check :mod:`schemas.contract` derives from it): a
  :class:`~schemas.errors.DecodeError` or :class:`~schemas.errors.InvalidRecord` whose text is the
  dead letter's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from . import native
from .codec import HEADER_SIZE, MAGIC, Codec
from .compiled import Unsupported, compile_encoder
from .confluent import HEADER_SIZE as CONFLUENT_HEADER_SIZE
from .confluent import MAGIC as CONFLUENT_MAGIC
from .confluent import ConfluentCodec
from .contract import codec_contract_check
from .errors import DecodeError, EncodeError, InvalidRecord
from .models import MODELS

__all__ = ["EMPTY_MESSAGE", "Framing", "Reader", "Serde", "decode_valid"]

T = TypeVar("T")

#: what a deployment's ``kafka.wire`` gives (``WireFormatConfig.codec()``)
Framing = Codec | ConfluentCodec

#: the reason given for a message without a value (a tombstone), by every reader
EMPTY_MESSAGE = "empty message (null value)"

log = logging.getLogger("schemas.serde")


def decode_valid(data: bytes | None, record: str, framing: Framing | None = None) -> dict[str, Any]:
    """A message of ``record`` (in ``framing``, the package's single-object codec by default) -> its
    dict in the current schema, held to the record's contract. DecodeError for bytes that are not a
    ``record`` (an unknown schema id, a registry that does not answer ...), InvalidRecord naming each
    rule the record breaks."""
    if data is None:
        raise DecodeError(EMPTY_MESSAGE)
    framing = framing or Codec.default()
    decoded = framing.decode(data, record)
    model = MODELS[record]
    if codec_contract_check(model, framing, record)(decoded):
        return decoded
    try:  # refused by the fast check: the model's own reasons
        model.model_validate(decoded)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors())
        raise InvalidRecord(f"invalid {record}: {problems}") from exc
    return decoded  # (the fast check refuses nothing the model accepts; the model is the rule)


class Serde:
    """Encode and decode the records in one framing. Built once per deployment (cheap per record);
    safe to share between threads as its framing is."""

    def __init__(self, framing: Framing | None = None) -> None:
        self.framing: Framing = framing or Codec.default()
        self.confluent = isinstance(self.framing, ConfluentCodec)
        self.codec: Codec = self.framing.codec if isinstance(self.framing, ConfluentCodec) else self.framing
        #: the bytes every message starts with before its body: a reader's key to its writer schema
        self.header_size = CONFLUENT_HEADER_SIZE if self.confluent else HEADER_SIZE

    @property
    def per_topic(self) -> bool:
        """Whether what is written depends on the topic (the Confluent framing writes each topic's
        registry id): then the encoders need the topic they write to."""
        return self.confluent

    # ---------------------------------------------------------------- encode

    def header(self, record: str, topic: str | None = None) -> bytes:
        """The bytes each message of ``record`` (written to ``topic``) starts with; the Confluent
        framing registers the record's schema under the topic's subject (RegistryError if refused)."""
        if isinstance(self.framing, ConfluentCodec):
            return self.framing.header(self._topic(record, topic), record)
        return MAGIC + self.codec.fingerprint(record)

    def encoder(self, record: str, topic: str | None = None) -> Callable[[dict[str, Any]], bytes]:
        """``record``'s Avro dict (its JSON form) -> message bytes, without validation (built once)."""
        if isinstance(self.framing, ConfluentCodec):
            return self.framing.encoder(self._topic(record, topic), record)
        return self.codec.encoder(record)

    def object_encoder(self, record: str, topic: str | None = None) -> Callable[[Any], bytes]:
        """An object with one attribute per field of ``record`` -> the bytes :meth:`encoder` writes for
        its dict form, by an encoder compiled from the current schema (several times cheaper than the
        codec's generic writer); the generic writer over the dict form where the schema has fields the
        compiler does not handle."""
        header = self.header(record, topic)
        try:
            return compile_encoder(self.codec.schema(record), header)
        except Unsupported as exc:
            log.warning("%s encoded through the generic codec", record, extra={"reason": str(exc)})
        generic = self.encoder(record, topic)
        names = tuple(f["name"] for f in self.codec.schema(record)["fields"])
        return lambda obj: generic({name: getattr(obj, name) for name in names})

    def _topic(self, record: str, topic: str | None) -> str:
        if topic is None:
            raise EncodeError(
                f"the Confluent framing writes {record} per topic (its subject's schema id): no topic given"
            )
        return topic

    # ---------------------------------------------------------------- decode

    def decode(self, data: bytes | bytearray | memoryview) -> tuple[str, dict[str, Any]]:
        """A message of any record -> ``(record name, dict in the current schema)``."""
        return self.framing.decode(data)

    def decode_valid(self, data: bytes | None, record: str) -> dict[str, Any]:
        """:func:`decode_valid` in this framing."""
        return decode_valid(data, record, self.framing)

    def reader(
        self,
        build: Mapping[str, Callable[..., T | None]],
        fallback: Callable[[str, dict[str, Any]], T],
        *,
        empty: Callable[[str], Exception] = DecodeError,
    ) -> Reader[T]:
        """Bytes -> a value of the caller's type (:attr:`Reader.read`). A message of the current schema
        of a record in ``build`` is read by the native decoder and its fields, in schema order, handed
        to ``build[name]``; anything else (another version, bytes the native decoder refuses, ``build``
        returning None for a rule that fails) is decoded to ``(name, dict)`` and handed to
        ``fallback``, which gives the value or raises with the precise reason. A message without a
        value raises ``empty(EMPTY_MESSAGE)``. The Confluent framing learns a registry id's native
        reader once a message has shown it is a record's current schema."""
        fast: dict[bytes, Callable[[Any], T | None]] = {}
        decode = self.framing.decode
        size = self.header_size
        if not isinstance(self.framing, ConfluentCodec):
            for name, make in build.items():
                read = native.fields_decoder(self.codec.schema(name), HEADER_SIZE)
                if read is not None:
                    fast[MAGIC + self.codec.fingerprint(name)] = _native_reader(read, make)

            def read_single(data: bytes | None) -> T:
                if data is None:
                    raise empty(EMPTY_MESSAGE)
                reads = fast.get(data[:size])
                if reads is not None:
                    value = reads(data)
                    if value is not None:
                        return value
                return fallback(*decode(data))

            return Reader(read_single, fast)

        confluent, codec = self.framing, self.codec

        def learn(header: bytes, name: str) -> None:
            """Read this registry id's messages natively from now on, if it is the record's current schema."""
            if header not in fast and confluent.writer_fingerprint(header) == codec.fingerprint(name):
                read = native.fields_decoder(codec.schema(name), size)
                if read is not None:
                    fast[header] = _native_reader(read, build[name])

        def read_confluent(data: bytes | None) -> T:
            if data is None:
                raise empty(EMPTY_MESSAGE)
            reads = fast.get(data[:size])
            if reads is not None:
                value = reads(data)
                if value is not None:
                    return value
            name, record = decode(data)
            if data[:1] == CONFLUENT_MAGIC and name in build:
                learn(bytes(data[:size]), name)
            return fallback(name, record)

        return Reader(read_confluent, fast)


@dataclass(frozen=True)
class Reader(Generic[T]):
    """What :meth:`Serde.reader` builds: ``read`` (the hot path's function) and ``native``, the native
    readers it has, by message header (the Confluent framing adds one per registry id it learns)."""

    read: Callable[[bytes | None], T]
    native: Mapping[bytes, Callable[[Any], T | None]]


def _native_reader(read: Callable[[Any], tuple[Any, ...]], build: Callable[..., T | None]) -> Callable[[Any], T | None]:
    """One record's fast path: its fields as the native decoder reads them, straight into ``build``;
    None for bytes the native decoder refuses (the general path then gives the reason)."""
    malformed = native.Malformed

    def read_into(data: Any) -> T | None:
        try:
            return build(*read(data))
        except malformed:
            return None

    return read_into
