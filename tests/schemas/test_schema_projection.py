"""The fast resolution path (schemas/projection.py) gives exactly what fastavro's resolution gives."""

from __future__ import annotations

import copy
import json
from io import BytesIO
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import RECORDS, Codec
from schemas.json_forms import to_avro
from schemas.projection import build_projection
from tests.schemas.schema_strategies import JSON_FORMS

CODEC = Codec.default()

# new fields: (type, default, strategy of values)
NEW_FIELDS: list[tuple[Any, Any, st.SearchStrategy[Any]]] = [
    ("string", "feed", st.text(max_size=5)),
    ("long", -7, st.integers(-(2**63), 2**63 - 1)),
    ("int", 0, st.integers(-(2**31), 2**31 - 1)),
    ("double", 1.5, st.floats(allow_nan=False)),
    ("boolean", True, st.booleans()),
    (["null", "string"], None, st.none() | st.text(max_size=5)),
    (["null", "long"], None, st.none() | st.integers(0, 10**12)),
    ({"type": "map", "values": "string"}, {}, st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3)),
    ({"type": "map", "values": "double"}, {"a": 0.5}, st.dictionaries(st.text(max_size=3), st.floats(allow_nan=False),
                                                                      max_size=3)),
    ({"type": "array", "items": "long"}, [], st.lists(st.integers(0, 100), max_size=3)),
    ({"type": "array", "items": "string"}, ["x"], st.lists(st.text(max_size=3), max_size=3)),
]


@st.composite
def evolutions(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any], list[tuple[str, st.SearchStrategy]]]:
    """(record, current schema, evolved schema, [(added field, value strategy)])."""
    record = draw(st.sampled_from(RECORDS))
    current = copy.deepcopy(CODEC.schema(record))
    fields = [f for f in current["fields"] if "default" not in f or not draw(st.booleans())]
    added = []
    for i, index in enumerate(draw(st.lists(st.integers(0, len(NEW_FIELDS) - 1), max_size=4))):
        avro_type, default, values = NEW_FIELDS[index]
        name = f"new_{i}"
        fields.append({"name": name, "type": avro_type, "default": default, "doc": "added"})
        added.append((name, values))
    fields = draw(st.permutations(fields))
    evolved = {**current, "fields": list(fields)}
    return record, current, evolved, added


def _resolve(data: bytes, writer: dict[str, Any], reader: dict[str, Any]) -> dict[str, Any]:
    return schemaless_reader_checked(data, fastavro.parse_schema(writer), fastavro.parse_schema(reader))


def schemaless_reader_checked(data: bytes, writer: Any, reader: Any) -> dict[str, Any]:
    fo = BytesIO(data)
    out = fastavro.schemaless_reader(fo, writer, reader)
    assert fo.tell() == len(data)
    return out  # type: ignore[return-value]


def _encode(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    fo = BytesIO()
    fastavro.schemaless_writer(fo, fastavro.parse_schema(schema), record)
    return fo.getvalue()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evolution=evolutions(), data=st.data())
def test_projection_equals_fastavro_resolution(evolution, data: st.DataObject) -> None:
    record, current, evolved, added = evolution
    base = to_avro(record, data.draw(JSON_FORMS[record]))
    extra = {name: data.draw(values) for name, values in added}
    for writer, reader, value in ((current, evolved, base), (evolved, current, {**base, **extra})):
        project = build_projection(writer, reader)
        assert project is not None, "top-level additions and removals with defaults are projected"
        body = _encode(writer, value)
        expected = _resolve(body, writer, reader)
        got = project(schemaless_reader_checked(body, fastavro.parse_schema(writer), None))
        assert got == expected
        assert list(got) == [f["name"] for f in reader["fields"]]  # (fastavro keeps the writer's order)
        # mutable defaults are fresh objects on every call
        again = project(schemaless_reader_checked(body, fastavro.parse_schema(writer), None))
        for key, val in got.items():
            if isinstance(val, (dict, list)) and key not in {f["name"] for f in writer["fields"]}:
                assert val is not again[key]


def _with(schema: dict[str, Any], field: str, **change: Any) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    next(f for f in out["fields"] if f["name"] == field).update(change)
    return out


@pytest.mark.parametrize(
    "reader",
    [
        _with(CODEC.schema("Impression"), "position", type="long"),  # promotion
        _with(CODEC.schema("Impression"), "context", type={"type": "map", "values": "bytes"}),
        _with(CODEC.schema("Impression"), "item_id", name="item", aliases=["item_id"]),
        _with(CODEC.schema("Sample"), "attribution",
              type={"type": "enum", "name": "Attribution", "symbols": ["POSITIVE", "NEGATIVE", "LATE_POSITIVE", "X"]}),
        {**CODEC.schema("Impression"), "name": "Other"},
        {**CODEC.schema("Impression"), "fields": [*CODEC.schema("Impression")["fields"],
                                                   {"name": "required", "type": "string"}]},
    ],
)
def test_other_changes_use_fastavro_resolution(reader: dict[str, Any]) -> None:
    writer = CODEC.schema(reader["name"] if reader["name"] in RECORDS else "Impression")
    assert build_projection(writer, reader) is None


def test_codec_uses_the_projection_and_agrees_with_the_general_path(copy_schemas, edit_schema) -> None:
    root = copy_schemas("evolved")
    old = Codec.from_dir(root)
    edit_schema(root, "sample", lambda s: s["fields"].insert(3, {"name": "surface", "type": ["null", "string"],
                                                                 "default": None, "doc": "UI surface."}))
    fast, general = Codec.from_dir(root), Codec.from_dir(root, fast_resolution=False)
    v1 = fast.schema_set.record("Sample").released[0].fingerprint
    assert fast._readers[v1][4] is not None and general._readers[v1][4] is None
    sample = json.loads(json.dumps(to_avro("Sample", {
        "sample_id": "i:click:NEGATIVE", "task": "click", "request_id": "r", "impression_id": "i", "user_id": "u",
        "item_id": "v", "position": 1, "context": {"a": "b"}, "impression_time_ms": 5, "label": 0,
        "attribution": "NEGATIVE", "emit_time_ms": 600_005, "sparse": {"c": "d"}, "dense": {"e": 0.5},
        "has_snapshot": True})))
    data = old.encode("Sample", sample)
    assert fast.decode(data) == general.decode(data) == ("Sample", {**sample, "surface": None})
    assert list(fast.decode(data, expected="Sample")) == [f["name"] for f in fast.schema("Sample")["fields"]]
