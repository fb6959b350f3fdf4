"""The pydantic models agree with the .avsc definitions field by field.

Nothing is listed twice: the Avro type of each model field is derived from its annotation and
constraints, and compared with the current .avsc (names and order, types, defaults, optionality).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
from pydantic.fields import FieldInfo

from schemas import RECORDS, Codec
from schemas.models import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, MODELS

NoneType = type(None)


def _bounds(metadata: list[Any]) -> tuple[int | None, int | None]:
    lo = hi = None
    for m in metadata:
        if isinstance(m, FieldInfo):
            m_lo, m_hi = _bounds(list(m.metadata))
            lo, hi = m_lo if m_lo is not None else lo, m_hi if m_hi is not None else hi
        elif isinstance(m, annotated_types.Ge):
            lo = int(m.ge)  # type: ignore[call-overload]
        elif isinstance(m, annotated_types.Le):
            hi = int(m.le)  # type: ignore[call-overload]
        elif isinstance(m, annotated_types.Interval):
            lo = int(m.ge) if m.ge is not None else lo  # type: ignore[call-overload]
            hi = int(m.le) if m.le is not None else hi  # type: ignore[call-overload]
    return lo, hi


def avro_type_of(annotation: Any, metadata: list[Any]) -> Any:
    """The Avro type a pydantic annotation (with its constraints) stands for."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return avro_type_of(args[0], [*metadata, *args[1:]])
    if annotation is str:
        return "string"
    if annotation is bool:
        return "boolean"
    if annotation is float:
        return "double"
    if annotation is int:
        lo, hi = _bounds(metadata)
        assert lo is not None and hi is not None, "an int field must be bounded to int32 or int64"
        if lo >= INT32_MIN and hi <= INT32_MAX:
            return "int"
        assert lo >= INT64_MIN and hi <= INT64_MAX, f"bounds {lo}..{hi} exceed a long"
        return "long"
    if origin is dict:
        assert args[0] is str, "Avro map keys are strings"
        return {"type": "map", "values": avro_type_of(args[1], [])}
    if origin is Literal:
        return {"type": "enum", "symbols": list(args)}
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not NoneType]
        assert len(rest) == 1 and len(args) == 2, f"unsupported union {annotation}"
        return ["null", avro_type_of(rest[0], metadata)]
    raise AssertionError(f"no Avro equivalent for {annotation!r}")


def normalise(avro_type: Any) -> Any:
    """Drop what a pydantic annotation cannot express (names and docs of named types)."""
    if isinstance(avro_type, list):
        return [normalise(t) for t in avro_type]
    if isinstance(avro_type, dict):
        kind = avro_type["type"]
        if kind == "map":
            return {"type": "map", "values": normalise(avro_type["values"])}
        if kind == "enum":
            return {"type": "enum", "symbols": list(avro_type["symbols"])}
        if kind == "array":
            return {"type": "array", "items": normalise(avro_type["items"])}
        return normalise(kind) if isinstance(kind, str) and len(avro_type) == 1 else avro_type
    return avro_type


_MISSING = object()


def model_default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return _MISSING if info.is_required() else info.default


def test_every_record_has_a_model() -> None:
    assert set(MODELS) == set(Codec.default().records) == set(RECORDS)
    for name, model in MODELS.items():
        assert model.avro_name == name


@pytest.mark.parametrize("record", RECORDS)
def test_model_agrees_with_avsc(record: str) -> None:
    avsc = Codec.default().schema(record)
    model = MODELS[record]
    assert list(model.model_fields) == [f["name"] for f in avsc["fields"]], "names and order"
    for field in avsc["fields"]:
        info = model.model_fields[field["name"]]
        where = f"{record}.{field['name']}"
        assert avro_type_of(info.annotation, list(info.metadata)) == normalise(field["type"]), f"{where}: type"
        if "default" in field:
            assert not info.is_required(), f"{where}: has a default in the .avsc, required in the model"
            assert model_default(info) == field["default"], f"{where}: default"
            assert type(model_default(info)) is type(field["default"]) or field["default"] is None, where
        else:
            assert info.is_required(), f"{where}: required in the .avsc, optional in the model"
        nullable = isinstance(field["type"], list) and "null" in field["type"]
        hints = typing.get_type_hints(model, include_extras=True)
        assert (NoneType in get_args(hints[field["name"]])) == nullable, f"{where}: optionality"


def test_the_derivation_catches_a_mismatch() -> None:
    """The helper is not vacuous: a wrong annotation gives a different Avro type."""
    assert avro_type_of(int, [annotated_types.Ge(0), annotated_types.Le(2**40)]) == "long"
    assert avro_type_of(int | None, [annotated_types.Ge(0), annotated_types.Le(1)]) == ["null", "int"]
    assert avro_type_of(dict[str, float], []) != normalise({"type": "map", "values": "string"})
    assert avro_type_of(Literal["A", "B"], []) != normalise({"type": "enum", "name": "E", "symbols": ["B", "A"]})
