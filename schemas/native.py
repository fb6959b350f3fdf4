"""The native Avro body decoder (schemas/_avro.c) and the decoding programs it runs.

fastavro's reader is generic: it looks each field's type up in the parsed schema for every record.
:func:`body_decoder` derives from a record's .avsc, once, a compact program of nested tuples (see
schemas/_avro.c) that the extension interprets in C: the .avsc stays the one definition of the record.
The result is what fastavro returns for the same schema; in addition every Avro int is checked to lie
in the 32-bit range, varints longer than 10 bytes are refused, and a negative length, enum index or
union index is a bad body (fastavro reads such lengths as a truncation and such indexes from the end
of the list).

A schema with types the extension does not decode (fixed, logical types, recursive records) gets no
program, and neither does anything when the extension is not built: the codec then keeps fastavro.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from operator import itemgetter
from typing import Any

try:
    from schemas import _avro
except ImportError:  # not built (a source checkout without `make setup`): the codec keeps fastavro
    _avro = None  # type: ignore[assignment]
    # Said once, where it shows (a Flink worker's log too): the results are the same, only slower.
    logging.getLogger("schemas").warning(
        "the native Avro decoder (schemas/_avro.c) is not built here: decoding falls back to fastavro, "
        "several times slower; build it with `make setup` (or `pip install -e .`)"
    )

BodyDecoder = Callable[[Any, int], dict[str, Any]]
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})
AVAILABLE = _avro is not None
Malformed: type[ValueError] = _avro.Malformed if _avro is not None else ValueError
# Malformed's kinds besides a bad body (0): the body ends early, or bytes follow it
TRUNCATED, TRAILING = (_avro.TRUNCATED, _avro.TRAILING) if _avro is not None else (1, 2)


class Unsupported(ValueError):
    """The schema uses a type the native decoder does not handle."""


def program(schema: dict[str, Any]) -> Any:
    """The decoding program of a record schema (the JSON of its .avsc); :class:`Unsupported` if it
    uses a type the extension does not decode."""
    return _Deriver().type_of(schema, namespace="")


def body_decoder(schema: dict[str, Any]) -> BodyDecoder | None:
    """``decode(data, offset)``: the record whose Avro body runs from ``offset`` to the end of ``data``
    (raises ``Malformed(kind, detail, offset)``); None when the native decoder cannot do this schema."""
    if _avro is None:
        return None
    try:
        return _avro.Program(program(schema)).decode  # type: ignore[no-any-return]
    except Unsupported:
        return None


def fields_decoder(schema: dict[str, Any], offset: int) -> Callable[[Any], tuple[Any, ...]] | None:
    """``decode(data)``: the field values, in schema order, of the record whose body starts at
    ``offset`` (a single-object message's header size) of a message of exactly this schema; raises
    ``Malformed``. None when the native decoder cannot do this schema."""
    body = body_decoder(schema)
    if body is None:
        return None
    names = [f["name"] for f in schema["fields"]]
    values = itemgetter(*names) if len(names) > 1 else lambda record: (record[names[0]],)
    return lambda data: values(body(data, offset))  # type: ignore[no-any-return]


class _Deriver:
    """Walks a schema as fastavro reads it: named types are defined where they first appear and may
    be referred to by full name or, inside their namespace, by short name."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}
        self.open: set[str] = set()  # records being derived: a reference to one is a recursive type

    def type_of(self, t: Any, namespace: str) -> Any:
        if isinstance(t, str):
            return t if t in PRIMITIVES else self._reference(t, namespace)
        if isinstance(t, list):
            return ("union", tuple(self.type_of(branch, namespace) for branch in t))
        if not isinstance(t, dict) or "logicalType" in t:
            raise Unsupported(f"type {t!r:.80}")
        kind = t.get("type")
        if kind in PRIMITIVES:
            return kind
        if kind == "map":
            return ("map", self.type_of(t["values"], namespace))
        if kind == "array":
            return ("array", self.type_of(t["items"], namespace))
        if kind == "enum":
            name = self._full_name(t, namespace)
            self.named[name] = ("enum", tuple(sys.intern(str(s)) for s in t["symbols"]))
            return self.named[name]
        if kind in ("record", "error"):
            name = self._full_name(t, namespace)
            inner = name.rpartition(".")[0]
            self.open.add(name)
            fields = tuple(self.type_of(f["type"], inner) for f in t["fields"])
            self.open.discard(name)
            self.named[name] = ("record", tuple(sys.intern(str(f["name"])) for f in t["fields"]), fields)
            return self.named[name]
        raise Unsupported(f"type {kind!r}")

    @staticmethod
    def _full_name(t: dict[str, Any], namespace: str) -> str:
        name = str(t["name"])
        if "." in name:
            return name
        space = t.get("namespace", namespace)
        return f"{space}.{name}" if space else name

    def _reference(self, name: str, namespace: str) -> Any:
        for candidate in (name, f"{namespace}.{name}" if namespace else name):
            if candidate in self.open:
                raise Unsupported(f"recursive type {candidate}")
            if candidate in self.named:
                return self.named[candidate]
        raise Unsupported(f"type {name!r}")  # a fixed, or a name fastavro would not resolve either
