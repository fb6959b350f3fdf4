"""Avro single-object encoding on fastavro (Avro spec, "Single-object encoding").

A message is ``0xC3 0x01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
Parsing Canonical Form + the Avro binary body. Decoding looks the fingerprint up among every released
version and the current definition of every record, and resolves the body to the reader's current
schema of that record (new fields get their defaults, removed ones are skipped).

Everything is precomputed when a :class:`Codec` is built; encode and decode are one dict lookup plus
fastavro's Cython writer or reader. The current version of each record is decoded by the native
decoder of schemas/native.py when it is built (several times faster than fastavro's reader, same
results). A Codec is immutable and safe to share between threads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any, overload

import fastavro
from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError
from fastavro.validation import validate as _fastavro_validate

from . import native
from .errors import (
    BadBody,
    BadMagic,
    DecodeError,
    EncodeError,
    ResolutionError,
    SchemaError,
    TruncatedMessage,
    UnknownFingerprint,
    UnknownRecord,
    WrongRecord,
)
from .projection import Projection, build_projection
from .registry import SchemaSet, SchemaVersion, load_schema_set

# fingerprint -> (record name, parsed writer schema, parsed reader schema or None, version label,
#                 projection or None, native body decoder or None); see Codec._add_reader
_Reader = tuple[str, Any, Any, str, Projection | None, native.BodyDecoder | None]

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10  # magic (2) + fingerprint (8)
_ENCODE_ERRORS = (ValueError, TypeError, OverflowError, AttributeError, KeyError, UnicodeError)
_SHOW_BYTES = 16
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def _int_fields(schema: dict[str, Any]) -> tuple[str, ...]:
    """Top-level fields of Avro type ``int`` (alone or in a union): fastavro reads any varint into them."""

    def is_int(t: Any) -> bool:
        return t == "int" or (isinstance(t, dict) and t.get("type") == "int") or (
            isinstance(t, list) and any(is_int(b) for b in t)
        )

    return tuple(f["name"] for f in schema["fields"] if is_int(f["type"]))


def _show(data: bytes | bytearray | memoryview, n: int = _SHOW_BYTES) -> str:
    head = bytes(data[:n]).hex(" ")
    return f"{head} ..." if len(data) > n else head


class _Sink(list):  # type: ignore[type-arg]
    """A write-only file for fastavro: it collects the chunks fastavro writes (one, in practice)."""

    __slots__ = ()
    write = list.append


class Codec:
    """Encode and decode the records of one schema set. Build with :meth:`default` or :meth:`from_dir`."""

    def __init__(self, schema_set: SchemaSet, *, fast_resolution: bool = True, native_decoder: bool = True) -> None:
        """`native_decoder=False` decodes everything with fastavro (the reference the tests compare with)."""
        self.schema_set = schema_set
        self._fast_resolution = fast_resolution
        self._native_decoder = native_decoder
        # record name -> (header bytes, parsed current schema)
        self._writers: dict[str, tuple[bytes, Any]] = {}
        self._encoders: dict[str, Callable[[dict[str, Any]], bytes]] = {}  # record name -> see _record_encoder
        self._readers: dict[bytes, _Reader] = {}
        self._fingerprints: dict[str, bytes] = {}
        self._field_names: dict[str, frozenset[str]] = {}
        self._int_fields: dict[str, tuple[str, ...]] = {}
        for name, rec in schema_set.records.items():
            self._field_names[name] = frozenset(f["name"] for f in rec.current.schema["fields"])
            self._int_fields[name] = _int_fields(rec.current.schema)
            reader = fastavro.parse_schema(rec.current.schema)
            self._writers[name] = (MAGIC + rec.current.fingerprint, reader)
            self._encoders[name] = _record_encoder(name, MAGIC + rec.current.fingerprint, reader)
            self._fingerprints[name] = rec.current.fingerprint
            for ver in rec.all_versions:
                self._add_reader(name, ver, reader, rec.current.fingerprint)

    def _add_reader(self, name: str, ver: SchemaVersion, reader: Any, current_fp: bytes) -> None:
        """Register how to decode version `ver` of record `name` into its current schema `reader`."""
        if ver.fingerprint in self._readers:
            known = self._readers[ver.fingerprint]
            if known[0] != name:  # pragma: no cover - canonical forms include the record's full name
                raise ResolutionError(
                    f"fingerprint {ver.fingerprint.hex()} of {name} {ver.label} is also {known[0]} {known[3]}"
                )
            if ver.version is not None:
                return  # an older release identical in canonical form; keep the first
        if ver.fingerprint == current_fp:
            body = native.body_decoder(ver.schema) if self._native_decoder else None
            self._readers[ver.fingerprint] = (name, reader, None, ver.label, None, body)  # no resolution needed
            return
        writer = fastavro.parse_schema(ver.schema)
        current = self.schema_set.record(name).current.schema
        project = build_projection(ver.schema, current) if self._fast_resolution else None
        if project is not None:  # read with the writer schema alone, then add/drop top-level fields
            self._readers[ver.fingerprint] = (name, writer, None, ver.label, project, None)
        else:  # fastavro's general schema resolution
            self._readers[ver.fingerprint] = (name, writer, reader, ver.label, None, None)

    # ---------------------------------------------------------------- construction

    @staticmethod
    def default() -> Codec:
        """The codec of the schemas shipped in this package (loaded once, then cached)."""
        return _default_codec()

    @classmethod
    def from_dir(cls, root: Path | str, *, fast_resolution: bool = True) -> Codec:
        """A codec over another schema directory (same layout as the package's)."""
        return cls(load_schema_set(root), fast_resolution=fast_resolution)

    # ---------------------------------------------------------------- introspection

    @property
    def records(self) -> tuple[str, ...]:
        return tuple(self._writers)

    def fingerprint(self, name: str) -> bytes:
        """The 8-byte fingerprint of `name`'s current schema, as written in each message header."""
        try:
            return self._fingerprints[name]
        except KeyError:
            raise self._unknown(name) from None

    def schema(self, name: str) -> dict[str, Any]:
        """The current schema of `name` as written in its .avsc file."""
        return self.schema_set.record(name).current.schema

    def known_fingerprints(self) -> dict[bytes, tuple[str, str]]:
        """Every fingerprint this codec decodes -> (record name, version label)."""
        return {fp: (entry[0], entry[3]) for fp, entry in self._readers.items()}

    def record_name(self, data: bytes | bytearray | memoryview) -> str:
        """The record a message holds, from its header alone (no body decoding)."""
        return self._lookup(data)[0]

    def _unknown(self, name: object) -> UnknownRecord:
        return UnknownRecord(f"unknown record {name!r}; known: {', '.join(self._writers)}")

    # ---------------------------------------------------------------- encode

    def encode(self, name: str, record: dict[str, Any], *, validate: bool = False) -> bytes:
        """Single-object encoding of `record` (an Avro dict of `name`'s current schema).

        fastavro fills missing fields that have defaults and ignores unknown keys; it does not check
        int ranges or reject a float for an int. `validate=True` checks the record fully first (slower).
        """
        try:
            encode = self._encoders[name]
        except (KeyError, TypeError):
            raise self._unknown(name) from None
        if validate:
            self.validate(name, record)
        return encode(record)

    def encoder(self, name: str) -> Callable[[dict[str, Any]], bytes]:
        """:meth:`encode` bound to one record, without validation: for hot loops that encode one kind
        of record many times (it skips the per-call lookup and option handling)."""
        try:
            return self._encoders[name]
        except (KeyError, TypeError):
            raise self._unknown(name) from None

    def validate(self, name: str, record: dict[str, Any]) -> None:
        """Raise EncodeError unless `record` is valid for `name`'s current schema.

        Checks types, int/long ranges, required fields (missing ones with a default are fine) and
        rejects keys the schema does not define.
        """
        try:
            _, schema = self._writers[name]
        except (KeyError, TypeError):
            raise self._unknown(name) from None
        if not isinstance(record, dict):
            raise EncodeError(f"cannot encode {name}: expected a dict, got {type(record).__name__}")
        unknown = set(record) - self._field_names[name]
        if unknown:
            raise EncodeError(f"invalid {name}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        try:
            _fastavro_validate(record, schema, raise_errors=True, strict=True)
        except ValidationError as exc:
            problems = "; ".join(str(e) for e in exc.errors) or str(exc)
            raise EncodeError(f"invalid {name}: {problems}") from exc
        except _ENCODE_ERRORS as exc:
            raise EncodeError(f"invalid {name}: {type(exc).__name__}: {exc}") from exc

    # ---------------------------------------------------------------- decode

    def _lookup(self, data: bytes | bytearray | memoryview) -> _Reader:
        try:
            fp = data[2:10]
            entry = self._readers.get(fp if type(fp) is bytes else bytes(fp))  # type: ignore[arg-type]
        except TypeError:
            raise DecodeError(f"expected bytes, got {type(data).__name__}") from None
        if entry is not None and data[:2] == MAGIC:
            return entry
        if len(data) < 2 or data[:2] != MAGIC:
            if len(data) < 2 and MAGIC.startswith(bytes(data)):
                raise TruncatedMessage(
                    f"message of {len(data)} bytes is shorter than the 10-byte single-object header: "
                    f"[{_show(data)}]"
                )
            hint = " (the Confluent framing's magic byte 00: read it with wire format confluent)" if (
                data[:1] == b"\x00") else ""
            raise BadMagic(
                f"message does not start with the single-object marker c3 01: got [{_show(data)}] "
                f"({len(data)} bytes){hint}"
            )
        if len(data) < HEADER_SIZE:
            raise TruncatedMessage(
                f"message of {len(data)} bytes is shorter than the 10-byte single-object header: "
                f"[{_show(data)}]"
            )
        raise UnknownFingerprint(
            f"unknown writer-schema fingerprint {bytes(fp).hex()} (message of {len(data)} bytes); "
            f"it matches no released or current version of {', '.join(self._writers)}"
        )

    @overload
    def decode(self, data: bytes | bytearray | memoryview) -> tuple[str, dict[str, Any]]: ...

    @overload
    def decode(self, data: bytes | bytearray | memoryview, expected: str) -> dict[str, Any]: ...

    def decode(
        self, data: bytes | bytearray | memoryview, expected: str | None = None
    ) -> tuple[str, dict[str, Any]] | dict[str, Any]:
        """Decode one message to ``(record name, dict in the current schema)``.

        With `expected`, return the dict only, and raise WrongRecord if the message holds another record.
        """
        entry = self._lookup(data)
        name, body = entry[0], entry[5]
        if expected is not None and expected != name:
            raise self._wrong(expected, entry, f"fingerprint {bytes(data[2:10]).hex()}")
        if body is not None:  # the current version (inlined from _read: the hot path pays no extra call)
            try:
                decoded = body(data, HEADER_SIZE)
            except native.Malformed as exc:
                raise self._native_error(exc, data, HEADER_SIZE, name, entry[3]) from None
            return (name, decoded) if expected is None else decoded
        return self._read(entry, data, HEADER_SIZE, expected is None)

    @overload
    def decode_body(
        self, fingerprint: bytes, data: bytes | bytearray | memoryview, offset: int, expected: None = None,
        writer: str = "",
    ) -> tuple[str, dict[str, Any]]: ...

    @overload
    def decode_body(
        self, fingerprint: bytes, data: bytes | bytearray | memoryview, offset: int, expected: str, writer: str = ""
    ) -> dict[str, Any]: ...

    def decode_body(
        self,
        fingerprint: bytes,
        data: bytes | bytearray | memoryview,
        offset: int,
        expected: str | None = None,
        writer: str = "",
    ) -> tuple[str, dict[str, Any]] | dict[str, Any]:
        """:meth:`decode` for another framing of the same records (schemas/confluent.py): the Avro body
        from `offset` to the end of `data`, written with the schema whose fingerprint is `fingerprint`;
        `writer` names that schema in errors (e.g. its registry id)."""
        entry = self._readers.get(fingerprint)
        if entry is None:
            raise UnknownFingerprint(
                f"{writer or 'the writer schema'} (fingerprint {fingerprint.hex()}) is no released or current "
                f"version of {', '.join(self._writers)}"
            )
        if expected is not None and expected != entry[0]:
            raise self._wrong(expected, entry, writer or f"fingerprint {fingerprint.hex()}")
        return self._read(entry, data, offset, expected is None)

    def _wrong(self, expected: str, entry: _Reader, writer: str) -> SchemaError:
        if expected not in self._writers:
            return self._unknown(expected)
        return WrongRecord(f"expected a {expected} message, got {entry[0]} ({entry[3]}, {writer})")

    def _read(
        self, entry: _Reader, data: bytes | bytearray | memoryview, offset: int, named: bool
    ) -> tuple[str, dict[str, Any]] | dict[str, Any]:
        """The record of the body at `offset` (as ``(name, record)`` when `named`)."""
        name, writer, reader, label, project, body = entry
        if body is not None:
            try:
                decoded = body(data, offset)
            except native.Malformed as exc:
                raise self._native_error(exc, data, offset, name, label) from None
            return (name, decoded) if named else decoded
        fo = BytesIO(data)
        fo.seek(offset)
        try:
            record: dict[str, Any] = schemaless_reader(fo, writer, reader)  # type: ignore[assignment]
        except Exception as exc:
            raise self._body_error(exc, data, offset, fo, name, label) from exc
        if fo.tell() != len(data):
            raise _trailing(data, fo.tell(), name, label)
        if project is not None:
            record = project(record)
        for field in self._int_fields[name]:
            value = record[field]
            if value is not None and not INT_MIN <= value <= INT_MAX:
                raise BadBody(
                    f"{name} ({label}) field {field!r} holds {value}, outside the 32-bit range of an Avro int"
                )
        return (name, record) if named else record

    @staticmethod
    def _native_error(
        exc: ValueError, data: bytes | bytearray | memoryview, start: int, name: str, label: str
    ) -> DecodeError:
        kind, detail, offset = exc.args
        if kind == native.TRAILING:
            return _trailing(data, offset, name, label)
        where = _where(data, start, offset, name, label)
        if kind == native.TRUNCATED:
            return TruncatedMessage(f"{where}: {detail}")
        return BadBody(f"{where}: {detail}; body starts [{_show(data[start:])}]")

    @staticmethod
    def _body_error(
        exc: Exception, data: bytes | bytearray | memoryview, start: int, fo: BytesIO, name: str, label: str
    ) -> DecodeError:
        where = _where(data, start, fo.tell(), name, label)
        if type(exc).__name__ == "SchemaResolutionError":
            return ResolutionError(f"cannot resolve {name} {label} to the current schema: {exc}")
        # fastavro signals the end of data with EOFError, or IndexError from reading past the buffer;
        # an enum symbol or union branch index out of range is an IndexError on a list.
        truncated = isinstance(exc, EOFError) or (
            isinstance(exc, IndexError) and fo.tell() >= len(data) and "list index" not in str(exc)
        )
        if truncated:
            return TruncatedMessage(f"{where}: the body ends early ({str(exc) or 'end of data'})")
        if isinstance(exc, IndexError):
            exc_text = f"an enum symbol or union branch index is out of range ({exc})"
        else:
            exc_text = f"{type(exc).__name__}: {exc}"
        return BadBody(f"{where}: {exc_text}; body starts [{_show(data[start:])}]")


def _where(data: bytes | bytearray | memoryview, start: int, offset: int, name: str, label: str) -> str:
    size = len(data)
    return f"{name} ({label}) body of {size - start} bytes, at offset {offset} of the {size}-byte message"


def _trailing(data: bytes | bytearray | memoryview, end: int, name: str, label: str) -> BadBody:
    return BadBody(
        f"{name} ({label}) message has {len(data) - end} trailing bytes after its body "
        f"(message of {len(data)} bytes, body ends at offset {end}): [{_show(data[end:])}]"
    )


def _record_encoder(name: str, header: bytes, schema: Any) -> Callable[[dict[str, Any]], bytes]:
    """Single-object encoding of records of one (parsed) schema: the header, then fastavro's body."""
    writer, errors, join = schemaless_writer, _ENCODE_ERRORS, b"".join

    def encode(record: dict[str, Any]) -> bytes:
        sink = _Sink((header,))
        try:
            writer(sink, schema, record)  # type: ignore[arg-type]
        except errors as exc:
            raise EncodeError(f"cannot encode {name}: {type(exc).__name__}: {exc}") from exc
        return join(sink)

    return encode


@functools.lru_cache(maxsize=1)
def _default_codec() -> Codec:
    return Codec(load_schema_set())
