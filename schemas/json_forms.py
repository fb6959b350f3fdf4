"""Conversion between the JSON forms of docs/wire-format.md and Avro dicts of the current schemas.

The JSON form of a record and its Avro dict have the same field names and values (enums are their
symbol strings, maps are dicts, nullable longs are int or None); they differ in that

- events carry a ``"type"`` discriminator (impression, feature_snapshot, label) in JSON;
- JSON may omit the optional fields, the Avro dict always has every field (defaults filled in).

``to_avro`` validates with the pydantic models of :mod:`schemas.models` by default (strict types,
no unknown fields, self-consistent samples); ``validate=False`` only fills defaults, for input that
is already known to be valid.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .errors import InvalidRecord, UnknownRecord
from .models import MODELS
from .records import EVENT_TYPE_OF, EVENT_TYPES

__all__ = [
    "EVENT_TYPES",
    "EVENT_TYPE_OF",
    "avro_to_event_json",
    "describe_validation_error",
    "event_json_to_avro",
    "from_avro",
    "to_avro",
]

_MAX_SHOWN = 80


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def describe_validation_error(record_name: str, exc: ValidationError) -> str:
    """One line naming each bad field, the rule and the value received."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(record)"
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "missing":
            parts.append(f"{loc}: field required")
        elif loc == "(record)":
            parts.append(msg.removeprefix("Value error, "))
        else:
            parts.append(f"{loc}: {msg} (got {_shown(err.get('input'))})")
    return f"invalid {record_name}: " + "; ".join(parts)


def _model(record_name: str) -> Any:
    try:
        return MODELS[record_name]
    except (KeyError, TypeError):
        raise UnknownRecord(f"unknown record {record_name!r}; known: {', '.join(MODELS)}") from None


def _defaults(record_name: str) -> list[tuple[str, Any, bool]]:
    """(field, default, is_factory) of the optional fields of a record."""
    out = []
    for name, info in _model(record_name).model_fields.items():
        if info.default_factory is not None:
            out.append((name, info.default_factory, True))
        elif not info.is_required():
            out.append((name, info.default, False))
    return out


_DEFAULTS = {name: _defaults(name) for name in MODELS}


def to_avro(record_name: str, obj: dict[str, Any], *, validate: bool = True) -> dict[str, Any]:
    """The Avro dict of `record_name` for its JSON form `obj` (an event's "type", if present, must match)."""
    model = _model(record_name)
    if not isinstance(obj, dict):
        raise InvalidRecord(f"invalid {record_name}: expected a JSON object, got {type(obj).__name__}")
    if "type" in obj:
        tag = EVENT_TYPE_OF.get(record_name)
        if obj["type"] != tag or tag is None:
            raise InvalidRecord(
                f"invalid {record_name}: type {_shown(obj['type'])} "
                + (f"(expected {tag!r})" if tag else "(only events carry a type)")
            )
        obj = {k: v for k, v in obj.items() if k != "type"}
    if validate:
        try:
            return dict(model.model_validate(obj))
        except ValidationError as exc:
            raise InvalidRecord(describe_validation_error(record_name, exc)) from None
    out = dict(obj)
    for name, default, factory in _DEFAULTS[record_name]:
        if name not in out:
            out[name] = default() if factory else default
    return out


def from_avro(record_name: str, avro: dict[str, Any], *, validate: bool = False) -> dict[str, Any]:
    """The JSON form (without "type") of an Avro dict of `record_name`, e.g. one from Codec.decode."""
    model = _model(record_name)
    if validate:
        try:
            return dict(model.model_validate(avro))
        except ValidationError as exc:
            raise InvalidRecord(describe_validation_error(record_name, exc)) from None
    return dict(avro)


def event_json_to_avro(obj: dict[str, Any], *, validate: bool = True) -> tuple[str, dict[str, Any]]:
    """(record name, Avro dict) of an event JSON object with its "type" discriminator."""
    if not isinstance(obj, dict):
        raise InvalidRecord(f"invalid event: expected a JSON object, got {type(obj).__name__}")
    tag = obj.get("type")
    record_name = EVENT_TYPES.get(tag) if isinstance(tag, str) else None
    if record_name is None:
        raise InvalidRecord(
            f"invalid event: type {_shown(tag) if 'type' in obj else 'missing'}; "
            f"expected one of {', '.join(EVENT_TYPES)}"
        )
    return record_name, to_avro(record_name, obj, validate=validate)


def avro_to_event_json(record_name: str, avro: dict[str, Any]) -> dict[str, Any]:
    """The event JSON object (with "type" first) of an Avro dict of an event record."""
    tag = EVENT_TYPE_OF.get(record_name)
    if tag is None:
        _model(record_name)
        raise InvalidRecord(f"{record_name} is not an event record; events are {', '.join(EVENT_TYPE_OF)}")
    return {"type": tag, **avro}
