"""A fast path for resolving an old writer version to the current reader schema.

Most schema evolution adds or removes top-level fields that have defaults. For such a pair the body
can be read with the writer schema alone (fastavro's fast path) and the result projected onto the
reader's fields: drop the removed ones, add the new ones with their defaults, in the reader's order.
That is about twice as fast as fastavro's general schema resolution, which matches the schemas on
every call.

A projection is only built when it is provably equivalent: the same record name, no field aliases,
and every field present on both sides with an identical type (ignoring docs, defaults and other
attributes that do not change the encoding). Default values come from fastavro itself; the keys come
in the reader's field order (fastavro's resolution keeps the writer's order for the fields both
have, which only differs when fields were reordered; dicts compare equal either way). Any other
pair (a promoted type, changed enum symbols, nested changes, ...) returns None and goes through
fastavro's resolution.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from io import BytesIO
from typing import Any

import fastavro
from fastavro import schemaless_reader

Projection = Callable[[dict[str, Any]], dict[str, Any]]
_IGNORED = frozenset({"doc", "default", "aliases", "order"})


def _shape(t: Any) -> Any:
    """The parts of a type that determine its encoding (and its name, for named types)."""
    if isinstance(t, list):
        return [_shape(x) for x in t]
    if isinstance(t, dict):
        out: dict[str, Any] = {}
        for key, value in t.items():
            if key in _IGNORED:
                continue
            if key == "fields":
                out[key] = [_shape(f) for f in value]
            elif key in ("type", "items", "values"):
                out[key] = _shape(value)
            else:
                out[key] = value
        return out
    return t


def _default_of(record_name: str, field: dict[str, Any]) -> Any:
    """The value fastavro's resolution gives a reader field missing from the writer."""
    writer = fastavro.parse_schema({"type": "record", "name": record_name, "fields": []})
    reader = fastavro.parse_schema({"type": "record", "name": record_name, "fields": [field]})
    return schemaless_reader(BytesIO(b""), writer, reader)[field["name"]]  # type: ignore[index]


def _factory(value: Any) -> Callable[[], Any]:
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return lambda: value
    if value == {}:
        return dict
    if value == []:
        return list
    return lambda: copy.deepcopy(value)


def build_projection(writer: dict[str, Any], reader: dict[str, Any]) -> Projection | None:
    """A function turning a record read with `writer` into the record `reader` resolution would give,
    or None when the pair needs fastavro's general resolution."""
    if writer.get("type") != "record" or reader.get("type") != "record":
        return None
    if (writer.get("name"), writer.get("namespace")) != (reader.get("name"), reader.get("namespace")):
        return None
    w_fields = {f["name"]: f for f in writer["fields"]}
    plan: list[tuple[str, bool, Callable[[], Any] | None]] = []
    for field in reader["fields"]:
        if field.get("aliases"):
            return None
        name = field["name"]
        if name in w_fields:
            if _shape(w_fields[name]["type"]) != _shape(field["type"]):
                return None
            plan.append((name, True, None))
        else:
            if "default" not in field:
                return None
            try:
                default = _default_of(str(reader["name"]), field)
            except Exception:
                return None
            plan.append((name, False, _factory(default)))
    if any(isinstance(f["type"], (dict, list)) and _defines_named(f["type"]) for f in writer["fields"]
           if f["name"] not in {p[0] for p in plan}):
        return None  # a dropped field defining a named type that a kept field might reference by name
    steps = tuple(plan)

    def project(record: dict[str, Any]) -> dict[str, Any]:
        return {name: record[name] if kept else make() for name, kept, make in steps}  # type: ignore[misc]

    return project


def _defines_named(t: Any) -> bool:
    if isinstance(t, list):
        return any(_defines_named(x) for x in t)
    if isinstance(t, dict):
        if t.get("type") in ("record", "enum", "fixed", "error"):
            return True
        return any(_defines_named(t[k]) for k in ("items", "values") if k in t)
    return False
