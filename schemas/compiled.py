"""Avro single-object encoding of flat records, compiled from their schema to straight-line Python.

fastavro's writer walks the schema for every record (a type dispatch, a logical-type lookup and an
extra-keys check per field); for the embedded runtime's samples, one per input event or so, that was
the largest cost after decoding (docs/performance.md). :func:`compile_encoder` turns a record schema
whose fields are all "flat" (string, int, long, boolean, double, enum, a map of those, or a union of
null with one of those) into one generated function that reads the fields as attributes of an object
and returns exactly the bytes the codec writes (the tests compare the two on many records).
A schema with any other field type is refused with :class:`Unsupported`: the caller then keeps the codec.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from schemas.errors import EncodeError, SchemaError

__all__ = ["Unsupported", "compile_encoder", "long_bytes"]


_SCALARS = ("string", "int", "long", "boolean", "double")
# zigzag varints of 0..63 (one byte each): the lengths of short strings, small ints, block counts
_SMALL = [bytes(((n << 1),)) for n in range(64)]
_double = struct.Struct("<d").pack


class Unsupported(SchemaError):
    """A schema this compiler does not handle (nested records, arrays, fixed, bytes, float...)."""


def long_bytes(n: int) -> bytes:
    """Zigzag varint of an Avro int or long (what fastavro's ``write_long`` writes)."""
    if 0 <= n < 64:
        return _SMALL[n]
    out = _recent_longs.get(n)
    return _keep(_recent_longs, n, _varint(n), 4096) if out is None else out


# Encoded values that repeat from one record to the next: big longs (the samples of one request share
# their impression and emit times) and short strings (map keys and values). Bounded: cleared when full.
_recent_longs: dict[int, bytes] = {}
_recent_strs: dict[str, bytes] = {}


def _keep(recent: dict[Any, bytes], value: Any, encoded: bytes, limit: int) -> bytes:
    if len(recent) >= limit:
        recent.clear()
    recent[value] = encoded
    return encoded


def _varint(n: int) -> bytes:
    if not -(2**63) <= n < 2**63:
        raise OverflowError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    if 1 << 35 <= z < 1 << 42:  # six bytes: every epoch-millisecond time from 1971 to 2109
        return bytes(
            (z & 127 | 128, z >> 7 & 127 | 128, z >> 14 & 127 | 128, z >> 21 & 127 | 128, z >> 28 & 127 | 128, z >> 35)
        )
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _str_bytes(s: str) -> bytes:
    """A string's length and UTF-8 bytes; short ones are kept (see ``_recent_strs``)."""
    b = s.encode()
    n = len(b)
    return long_bytes(n) + b if n >= 64 else _keep(_recent_strs, s, _SMALL[n] + b, 65536)


def _bool_bytes(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


_WRITERS: dict[str, Callable[[Any], bytes]] = {
    "string": _str_bytes,
    "int": long_bytes,
    "long": long_bytes,
    "boolean": _bool_bytes,
    "double": _double,
}


def _map_writer(write_value: Callable[[Any], bytes]) -> Callable[[dict[str, Any]], bytes]:
    """A map as fastavro writes it: one block (count, then key/value pairs), then the 0 terminator.
    The last map written is remembered by identity: the maps of the records written here are treated
    as immutable (the join's samples share one snapshot's maps), so the same map is the same bytes."""
    last: tuple[Any, bytes] = (None, b"")  # rebound whole: safe to share between threads

    def write_map(m: dict[str, Any]) -> bytes:
        nonlocal last
        if not m:
            return b"\x00"
        seen = last
        if m is seen[0]:
            return seen[1]
        parts = [long_bytes(len(m))]
        known = _recent_strs.get
        if write_value is _str_bytes:
            for k, v in m.items():
                parts += (known(k) or _str_bytes(k), known(v) or _str_bytes(v))
        else:
            for k, v in m.items():
                parts += (known(k) or _str_bytes(k), write_value(v))
        parts.append(b"\x00")
        out = b"".join(parts)
        last = (m, out)
        return out

    return write_map


def _enum_writer(name: str, symbols: list[str]) -> Callable[[str], bytes]:
    table = {s: long_bytes(i) for i, s in enumerate(symbols)}

    def write_enum(symbol: str) -> bytes:
        try:
            return table[symbol]
        except (KeyError, TypeError):
            raise ValueError(f"{symbol!r} is not a symbol of enum {name}") from None

    return write_enum


def _optional_writer(null_index: int, value_index: int, write_value: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    null_tag, value_tag = long_bytes(null_index), long_bytes(value_index)

    def write_optional(v: Any) -> bytes:
        return null_tag if v is None else value_tag + write_value(v)

    return write_optional


def _writer(field_type: Any, where: str) -> Callable[[Any], bytes]:
    if isinstance(field_type, str):
        if field_type in _WRITERS:
            return _WRITERS[field_type]
        raise Unsupported(f"{where}: type {field_type!r}")
    if isinstance(field_type, list):
        if len(field_type) == 2 and "null" in field_type:
            null_index = field_type.index("null")
            other = field_type[1 - null_index]
            if other == "null":
                raise Unsupported(f"{where}: a union of null with null")
            return _optional_writer(null_index, 1 - null_index, _writer(other, where))
        raise Unsupported(f"{where}: a union other than [null, T]")
    if isinstance(field_type, dict):
        kind = field_type.get("type")
        if field_type.get("logicalType"):
            raise Unsupported(f"{where}: logical type {field_type['logicalType']!r}")
        if kind == "map":
            return _map_writer(_writer(field_type["values"], where + " values"))
        if kind == "enum":
            return _enum_writer(field_type["name"], list(field_type["symbols"]))
        if kind in _SCALARS:
            return _writer(kind, where)
    raise Unsupported(f"{where}: type {field_type!r}")


def compile_encoder(schema: dict[str, Any], header: bytes) -> Callable[[Any], bytes]:
    """``obj -> header + Avro body`` of a flat record schema, reading each field as ``obj.<name>``.

    Raises :class:`Unsupported` for a schema with other field types; the generated function raises
    schemas' EncodeError (naming the record and field) for a value that does not fit its field.
    """
    record = schema["name"]
    if schema.get("type") != "record":
        raise Unsupported(f"{record}: not a record")
    fields = schema["fields"]
    names = [f["name"] for f in fields]
    writers = [_writer(f["type"], f"{record}.{f['name']}") for f in fields]
    for name in names:
        if not name.isidentifier():
            raise Unsupported(f"{record}.{name}: not an attribute name")

    def encode_fieldwise(o: Any) -> bytes:
        """The general path (long strings, big numbers), naming the field at fault."""
        parts = [header]
        for name, write in zip(names, writers, strict=True):
            try:
                parts.append(write(getattr(o, name)))
            except Exception as exc:
                raise EncodeError(f"cannot encode {record}: field {name!r}: {type(exc).__name__}: {exc}") from exc
        return b"".join(parts)

    # The common case in one expression: strings, small numbers and booleans inline (a string's length
    # prefix from a table, which raises IndexError for a long one), everything else through its
    # writer; any exception sends the record through the general path, which encodes it or names the
    # field at fault.
    scope: dict[str, Any] = {"header": header, "SMALL": _SMALL, "fieldwise": encode_fieldwise}
    lines, parts = [], ["header"]
    for i, (f, write) in enumerate(zip(fields, writers, strict=True)):
        if write is _str_bytes:
            lines.append(f"        b{i} = o.{f['name']}.encode()\n")
            parts += [f"SMALL[len(b{i})]", f"b{i}"]
        elif write is long_bytes:
            scope[f"w{i}"] = write
            lines.append(f"        v{i} = o.{f['name']}\n")
            parts.append(f"(SMALL[v{i}] if 0 <= v{i} < 64 else w{i}(v{i}))")
        elif write is _bool_bytes:
            parts.append(f"(b'\\x01' if o.{f['name']} else b'\\x00')")
        else:
            scope[f"w{i}"] = write
            parts.append(f"w{i}(o.{f['name']})")
    code = (
        "def encode(o):\n"
        "    try:\n"
        f"{''.join(lines)}"
        f"        return b''.join(({', '.join(parts)}))\n"
        "    except Exception:\n"
        "        return fieldwise(o)\n"
    )
    exec(code, scope)
    return scope["encode"]  # type: ignore[no-any-return]
