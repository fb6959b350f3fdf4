"""A fast check of decoded records against a pydantic contract model, derived from that model.

Validating a record with pydantic builds a model instance: a large part of the cost of each record of
the sidecar's stream. :func:`contract_check` reads the model's fields (types, bounds, optional ones,
no extra keys, no NaN/inf) and its after-validators, and returns a plain predicate that accepts a
record only if the model would. The model stays the one definition of the rules: the predicate runs
its validators themselves, and a record the predicate refuses is validated by the model, whose errors
are the reason given (so a refusal reads the same either way).

Only what the contract models use is supported (str, bool, int and float with ``ge``/``le`` bounds,
``Literal``, ``X | None``, ``dict[str, X]``, after-validators, strict mode without extra fields);
anything else is refused when the check is built, so a new kind of rule cannot be silently skipped.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

Check = Callable[[Any], bool]


class UnsupportedRule(TypeError):
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


def contract_check(model: type[BaseModel]) -> Check:
    """A predicate true only for records (dicts) that ``model`` accepts."""
    config = model.model_config
    if not config.get("strict") or config.get("extra") != "forbid":
        raise UnsupportedRule(f"{model.__name__} must be strict and forbid extra fields")
    allow_inf_nan = bool(config.get("allow_inf_nan", True))
    fields = [
        (name, _value_check(info.annotation, list(info.metadata), allow_inf_nan))
        for name, info in model.model_fields.items()
    ]
    known = frozenset(model.model_fields)
    required = frozenset(name for name, info in model.model_fields.items() if info.is_required())
    defaults = {name: info.default for name, info in model.model_fields.items() if not info.is_required()}
    decorators = model.__pydantic_decorators__
    if decorators.field_validators or decorators.validators or decorators.root_validators:
        raise UnsupportedRule(f"{model.__name__} has field validators")
    after = []
    for decorator in decorators.model_validators.values():
        if decorator.info.mode != "after":
            raise UnsupportedRule(f"{model.__name__} has a {decorator.info.mode!r} model validator")
        after.append(decorator.func)

    def check(record: Any) -> bool:
        if type(record) is not dict:
            return False
        keys = record.keys()
        if not required <= keys or not keys <= known:
            return False
        for name, accepts in fields:
            if name in record and not accepts(record[name]):
                return False
        if after:
            # the validators read attributes: the record's values, with the defaults of absent fields
            view = types.SimpleNamespace(**{**defaults, **record})
            try:
                for validate in after:
                    validate(view)
            except (ValueError, AssertionError):  # what pydantic turns into validation errors
                return False
        return True

    return check
