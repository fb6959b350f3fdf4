"""A fast check of decoded records against a pydantic contract model, derived from that model.

Validating a record with pydantic builds a model instance: a large part of the cost of each record a
reader checks (the trainer's stream of samples, through :func:`schemas.serde.decode_valid`).
:func:`contract_check` reads the model's fields (types, bounds, optional ones, no extra keys, no
NaN/inf) and its after-validators, and returns a plain predicate that accepts a record only if the
model would. The model stays the one definition of the rules: the predicate runs
its validators themselves, and a record the predicate refuses is validated by the model, whose errors
are the reason given (so a refusal reads the same either way).

:func:`decoded_contract_check` does the same for records the Avro codec decoded with the model's
schema: it also reads the schema, and leaves out what decoding already guarantees (the set of fields,
the types, map keys being str, int and long ranges, enum symbols), so only the rest is checked (the
model's tighter bounds, finite doubles) and the after-validators run on the record itself.

Only what the contract models use is supported (str, bool, int and float with ``ge``/``le`` bounds,
``Literal``, ``X | None``, ``dict[str, X]``, after-validators, strict mode without extra fields);
anything else is refused when the check is built, so a new kind of rule cannot be silently skipped.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .errors import SchemaError

if TYPE_CHECKING:
    from .codec import Codec
    from .confluent import ConfluentCodec

Check = Callable[[Any], bool]


class UnsupportedRule(SchemaError, TypeError):
    """The model uses a rule this derivation does not know (extend it rather than skip the rule)."""


def _bounds(metadata: list[Any]) -> tuple[Any, Any]:
    """The ``ge``/``le`` bounds, kept exact (an int bound as a float would round)."""
    low: Any = -math.inf
    high: Any = math.inf
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = max(low, item.ge)
        elif isinstance(item, annotated_types.Le):
            high = min(high, item.le)
        else:
            raise UnsupportedRule(f"constraint {item!r}")
    return low, high


def _value_check(annotation: Any, metadata: list[Any], allow_inf_nan: bool) -> Check:
    """A predicate for one value of type ``annotation`` in pydantic's strict mode."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        info = args[1]
        extra = info.metadata if isinstance(info, FieldInfo) else list(args[1:])
        return _value_check(args[0], [*metadata, *extra], allow_inf_nan)
    if origin in (typing.Union, types.UnionType):
        if len(args) != 2 or type(None) not in args:
            raise UnsupportedRule(f"union {annotation!r}")
        inner = _value_check(next(a for a in args if a is not type(None)), metadata, allow_inf_nan)
        return lambda v: v is None or inner(v)
    if origin is typing.Literal:
        if metadata:
            raise UnsupportedRule(f"constraints on {annotation!r}")
        allowed = frozenset(args)
        return lambda v: type(v) is str and v in allowed
    if origin is dict:
        if metadata or args[0] is not str:
            raise UnsupportedRule(f"mapping {annotation!r}")
        item = _value_check(args[1], [], allow_inf_nan)
        return lambda v: type(v) is dict and all(type(k) is str and item(x) for k, x in v.items())
    if annotation in (str, bool):
        if metadata:
            raise UnsupportedRule(f"constraints on {annotation!r}")
        return lambda v: type(v) is annotation
    if annotation is int:
        low, high = _bounds(metadata)
        return lambda v: type(v) is int and low <= v <= high
    if annotation is float:
        low, high = _bounds(metadata)
        finite = not allow_inf_nan
        return lambda v: type(v) in (int, float) and low <= v <= high and (not finite or math.isfinite(v))
    raise UnsupportedRule(f"type {annotation!r}")


def _rules(model: type[BaseModel]) -> tuple[bool, list[Callable[[Any], Any]]]:
    """The model's allow_inf_nan and its after-validators; UnsupportedRule for any other kind of rule."""
    config = model.model_config
    if not config.get("strict") or config.get("extra") != "forbid":
        raise UnsupportedRule(f"{model.__name__} must be strict and forbid extra fields")
    decorators = model.__pydantic_decorators__
    if decorators.field_validators or decorators.validators or decorators.root_validators:
        raise UnsupportedRule(f"{model.__name__} has field validators")
    after = []
    for decorator in decorators.model_validators.values():
        if decorator.info.mode != "after":
            raise UnsupportedRule(f"{model.__name__} has a {decorator.info.mode!r} model validator")
        after.append(decorator.func)
    return bool(config.get("allow_inf_nan", True)), after


def _validators_pass(after: list[Callable[[Any], Any]], view: Any) -> bool:
    try:
        for validate in after:
            validate(view)
    except (ValueError, AssertionError):  # what pydantic turns into validation errors
        return False
    return True


def contract_check(model: type[BaseModel]) -> Check:
    """A predicate true only for records (dicts) that ``model`` accepts."""
    allow_inf_nan, after = _rules(model)
    fields = [
        (name, _value_check(info.annotation, list(info.metadata), allow_inf_nan))
        for name, info in model.model_fields.items()
    ]
    known = frozenset(model.model_fields)
    required = frozenset(name for name, info in model.model_fields.items() if info.is_required())
    defaults = {name: info.default for name, info in model.model_fields.items() if not info.is_required()}

    def check(record: Any) -> bool:
        if type(record) is not dict:
            return False
        keys = record.keys()
        if not required <= keys or not keys <= known:
            return False
        for name, accepts in fields:
            if name in record and not accepts(record[name]):
                return False
        # the validators read attributes: the record's values, with the defaults of absent fields
        return not after or _validators_pass(after, types.SimpleNamespace(**{**defaults, **record}))

    return check


# What decoding an Avro type guarantees of its values: their Python type and, for numbers, the range.
_AVRO_GUARANTEES: dict[str, tuple[type, float, float]] = {
    "string": (str, -math.inf, math.inf),
    "boolean": (bool, -math.inf, math.inf),
    "int": (int, -(2**31), 2**31 - 1),
    "long": (int, -(2**63), 2**63 - 1),
    "double": (float, -math.inf, math.inf),
    "float": (float, -math.inf, math.inf),
}


def _residual_check(avro: Any, annotation: Any, metadata: list[Any], allow_inf_nan: bool) -> Check | None:
    """What ``annotation`` requires of a value beyond what decoding Avro type ``avro`` guarantees
    (None: nothing). UnsupportedRule when the two types do not correspond."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(avro, dict) and avro.get("type") in _AVRO_GUARANTEES:
        avro = avro["type"]
    if origin is typing.Annotated:
        info = args[1]
        extra = info.metadata if isinstance(info, FieldInfo) else list(args[1:])
        return _residual_check(avro, args[0], [*metadata, *extra], allow_inf_nan)
    if origin in (typing.Union, types.UnionType):
        inner = next((a for a in args if a is not type(None)), None)
        if len(args) != 2 or inner is None or not isinstance(avro, list) or avro[0] != "null" or len(avro) != 2:
            raise UnsupportedRule(f"union {annotation!r} for Avro {avro!r}")
        present = _residual_check(avro[1], inner, metadata, allow_inf_nan)
        return None if present is None else (lambda v: v is None or present(v))
    if origin is typing.Literal:
        if not isinstance(avro, dict) or avro.get("type") != "enum" or metadata:
            raise UnsupportedRule(f"{annotation!r} for Avro {avro!r}")
        allowed = frozenset(args)
        return None if allowed >= set(avro["symbols"]) else (lambda v: v in allowed)
    if origin is dict:
        if not isinstance(avro, dict) or avro.get("type") != "map" or metadata or args[0] is not str:
            raise UnsupportedRule(f"{annotation!r} for Avro {avro!r}")
        item = _residual_check(avro["values"], args[1], [], allow_inf_nan)
        return None if item is None else (lambda v: all(map(item, v.values())))
    decoded = _AVRO_GUARANTEES.get(avro) if isinstance(avro, str) else None
    if decoded is None or not (decoded[0] is annotation or (decoded[0], annotation) == (int, float)):
        raise UnsupportedRule(f"{annotation!r} for Avro {avro!r}")
    if annotation in (str, bool):
        if metadata:
            raise UnsupportedRule(f"constraints on {annotation!r}")
        return None
    low, high = _bounds(metadata)
    in_range = low <= decoded[1] and decoded[2] <= high
    if annotation is int or allow_inf_nan:
        return None if in_range else (lambda v: low <= v <= high)
    return (lambda v: low <= v <= high and math.isfinite(v)) if not in_range else math.isfinite


class _Attributes:
    """A decoded record read as attributes, as after-validators read a model (no copy of the dict)."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.__dict__ = record


def decoded_contract_check(model: type[BaseModel], schema: dict[str, Any]) -> Check:
    """A predicate true only for the records that ``model`` accepts, among those the Avro codec
    decodes with ``schema`` (the record's .avsc; anything else must go to :func:`contract_check`)."""
    allow_inf_nan, after = _rules(model)
    avro_fields = {f["name"]: f["type"] for f in schema["fields"]}
    if set(avro_fields) != set(model.model_fields):
        raise UnsupportedRule(f"{model.__name__} and the Avro record {schema.get('name')} have other fields")
    fields = []
    for name, info in model.model_fields.items():
        residual = _residual_check(avro_fields[name], info.annotation, list(info.metadata), allow_inf_nan)
        if residual is not None:
            fields.append((name, residual))

    def check(record: dict[str, Any]) -> bool:
        for name, accepts in fields:
            if not accepts(record[name]):
                return False
        return not after or _validators_pass(after, _Attributes(record))

    return check


_codec_checks: dict[tuple[type[BaseModel], str, bytes], Check] = {}  # (model, record, fingerprint) -> check


def codec_contract_check(model: type[BaseModel], codec: Codec | ConfluentCodec, record: str) -> Check:
    """The contract check for the ``record`` dicts ``codec`` decodes: only what the record's current
    schema does not already guarantee (:func:`decoded_contract_check`), or the whole check where the
    schema does not correspond to the model field by field. Built once per schema version."""
    key = (model, record, codec.fingerprint(record))
    check = _codec_checks.get(key)
    if check is None:
        try:
            check = decoded_contract_check(model, codec.schema(record))
        except UnsupportedRule:
            check = contract_check(model)
        _codec_checks[key] = check
    return check
