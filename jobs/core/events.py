"""Input events of the sample join (docs/wire-format.md): light value types and their JSON form.

The types are frozen slots dataclasses: cheap to build, no validation on construction. Validation
happens once, at the edge, in :func:`event_from_json`, which raises :class:`BadEvent` with a reason
that names the field, what was received and what was expected (it goes to the dead letter).
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NoReturn

from jobs.core._codegen import dict_former, fast_constructor
from jobs.errors import JobError
from schemas.records import EVENT_TYPES as _RECORD_OF_TYPE
from schemas.records import IMPRESSION_FIELDS, LABEL_FIELDS, POSITION_MAX, POSITION_MIN, SNAPSHOT_FIELDS, check_fields

# Event times are epoch milliseconds of real events: not before 1970, and before the year 10000 (the
# last instant a datetime can hold), so that adding a horizon stays far inside a signed 64-bit long
# (Flink timers) and any consumer can turn them into dates.
MIN_EVENT_TIME_MS = 0
MAX_EVENT_TIME_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z
# ``position``: a zero-based slot (schemas.records, the bound the trainer's contract holds samples to).
MIN_POSITION = POSITION_MIN
MAX_POSITION = POSITION_MAX

EVENT_TYPES = tuple(_RECORD_OF_TYPE)  # the JSON ``type`` of each event, from schemas.records


class BadEvent(JobError):
    """An input record that is not a valid event; the message is the dead-letter reason."""


@dataclass(frozen=True, slots=True)
class Impression:
    request_id: str
    impression_id: str
    user_id: str
    item_id: str
    event_time_ms: int
    position: int = 0
    context: dict[str, str] = field(default_factory=dict)  # treat as immutable


@dataclass(frozen=True, slots=True)
class FeatureSnapshot:
    request_id: str
    event_time_ms: int
    sparse: dict[str, str] = field(default_factory=dict)  # treat as immutable
    dense: dict[str, float] = field(default_factory=dict)  # treat as immutable


@dataclass(frozen=True, slots=True)
class Label:
    request_id: str
    impression_id: str
    label_type: str
    event_time_ms: int
    value: float = 1.0


Event = Impression | FeatureSnapshot | Label

# The value types carry exactly their schema's fields, in schema order (positional forms rely on it).
check_fields("Impression", Impression.__dataclass_fields__, "jobs.core.events.Impression")
check_fields("FeatureSnapshot", FeatureSnapshot.__dataclass_fields__, "jobs.core.events.FeatureSnapshot")
check_fields("Label", Label.__dataclass_fields__, "jobs.core.events.Label")


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxdict = _SHORT.maxlist = 4


def _describe(value: Any) -> str:
    # reprlib bounds the work too: a reason for a huge string or map costs no more than a small one
    text = _SHORT.repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}" if value is not None else "null"


def _id(obj: dict[str, Any], name: str, kind: str) -> str:
    value = obj.get(name)
    if type(value) is str and value:
        return value
    if name not in obj:
        raise BadEvent(f"{kind}: missing field {name!r} (expected a non-empty string)")
    raise BadEvent(f"{kind}: field {name!r} must be a non-empty string, got {_describe(value)}")


def _text(obj: dict[str, Any], name: str, kind: str) -> str:
    value = obj.get(name)
    if type(value) is str:
        return value
    if name not in obj:
        raise BadEvent(f"{kind}: missing field {name!r} (expected a string)")
    raise BadEvent(f"{kind}: field {name!r} must be a string, got {_describe(value)}")


def _time(obj: dict[str, Any], kind: str) -> int:
    value = obj.get("event_time_ms")
    if type(value) is int:
        if MIN_EVENT_TIME_MS <= value < MAX_EVENT_TIME_MS:
            return value
    elif type(value) is float and value.is_integer():
        if MIN_EVENT_TIME_MS <= value < MAX_EVENT_TIME_MS:
            return int(value)
    elif "event_time_ms" not in obj:
        raise BadEvent(f"{kind}: missing field 'event_time_ms' (expected an integer, epoch milliseconds)")
    raise BadEvent(
        f"{kind}: field 'event_time_ms' must be an integer of epoch milliseconds from 0 (1970) to "
        f"{MAX_EVENT_TIME_MS} (year 10000), got {_describe(value)}"
    )


def _str_map(obj: dict[str, Any], name: str, kind: str) -> dict[str, str]:
    value = obj.get(name)
    if value is None:
        return {}
    if type(value) is not dict:
        raise BadEvent(f"{kind}: field {name!r} must be an object of strings, got {_describe(value)}")
    for k, v in value.items():
        if type(v) is not str:
            raise BadEvent(f"{kind}: field {name!r}: value of {k!r} must be a string, got {_describe(v)}")
    return value


def _float_map(obj: dict[str, Any], name: str, kind: str) -> dict[str, float]:
    value = obj.get(name)
    if value is None:
        return {}
    if type(value) is not dict:
        raise BadEvent(f"{kind}: field {name!r} must be an object of numbers, got {_describe(value)}")
    converted = False
    for k, v in value.items():
        tv = type(v)
        if tv is float:
            if not math.isfinite(v):
                raise BadEvent(f"{kind}: field {name!r}: value of {k!r} must be finite, got {v!r}")
        elif tv is int:
            converted = True
        else:
            raise BadEvent(f"{kind}: field {name!r}: value of {k!r} must be a number, got {_describe(v)}")
    if converted:
        return {k: float(v) for k, v in value.items()}
    return value


make_impression: Callable[[str, str, str, str, int, int, dict[str, str]], Impression] = fast_constructor(
    Impression, IMPRESSION_FIELDS
)
make_snapshot: Callable[[str, int, dict[str, str], dict[str, float]], FeatureSnapshot] = fast_constructor(
    FeatureSnapshot, SNAPSHOT_FIELDS
)
make_label: Callable[[str, str, str, int, float], Label] = fast_constructor(Label, LABEL_FIELDS)


def _all_str(d: dict[str, Any]) -> bool:
    for v in d.values():  # noqa: SIM110 - a plain loop is faster than all(<genexpr>)
        if type(v) is not str:
            return False
    return True


def _all_float(d: dict[str, Any]) -> bool:
    for v in d.values():  # noqa: SIM110 - a plain loop is faster than all(<genexpr>)
        if type(v) is not float or not math.isfinite(v):
            return False
    return True


def _impression(obj: dict[str, Any]) -> Impression:
    # Fast path: everything present and well-typed (the common case) is checked in one expression.
    try:
        rid = obj["request_id"]
        iid = obj["impression_id"]
        user = obj["user_id"]
        item = obj["item_id"]
        t = obj["event_time_ms"]
        pos = obj["position"]
        ctx = obj["context"]
    except KeyError:
        rid = iid = user = item = t = ctx = None
        pos = obj.get("position", 0)
    if (
        type(rid) is str
        and rid
        and type(iid) is str
        and iid
        and type(user) is str
        and type(item) is str
        and type(t) is int
        and MIN_EVENT_TIME_MS <= t < MAX_EVENT_TIME_MS
        and type(pos) is int
        and MIN_POSITION <= pos <= MAX_POSITION
        and type(ctx) is dict
        and _all_str(ctx)
    ):
        return make_impression(rid, iid, user, item, t, pos, ctx)
    kind = "impression"
    if pos is None:
        pos = 0
    elif type(pos) is not int:
        raise BadEvent(f"impression: field 'position' must be an integer, got {_describe(pos)}")
    elif not MIN_POSITION <= pos <= MAX_POSITION:
        raise BadEvent(
            f"impression: field 'position' must be a zero-based slot from {MIN_POSITION} to {MAX_POSITION}, "
            f"got {_describe(pos)}"
        )
    return make_impression(
        _id(obj, "request_id", kind),
        _id(obj, "impression_id", kind),
        _text(obj, "user_id", kind),
        _text(obj, "item_id", kind),
        _time(obj, kind),
        pos,
        _str_map(obj, "context", kind),
    )


def _snapshot(obj: dict[str, Any]) -> FeatureSnapshot:
    try:
        rid = obj["request_id"]
        t = obj["event_time_ms"]
        sparse = obj["sparse"]
        dense = obj["dense"]
    except KeyError:
        pass
    else:
        if (
            type(rid) is str
            and rid
            and type(t) is int
            and MIN_EVENT_TIME_MS <= t < MAX_EVENT_TIME_MS
            and type(sparse) is dict
            and _all_str(sparse)
            and type(dense) is dict
            and _all_float(dense)
        ):
            return make_snapshot(rid, t, sparse, dense)
    kind = "feature_snapshot"
    return make_snapshot(
        _id(obj, "request_id", kind),
        _time(obj, kind),
        _str_map(obj, "sparse", kind),
        _float_map(obj, "dense", kind),
    )


def _label(obj: dict[str, Any]) -> Label:
    try:
        rid = obj["request_id"]
        iid = obj["impression_id"]
        lt = obj["label_type"]
        t = obj["event_time_ms"]
        value = obj["value"]
    except KeyError:
        rid = iid = lt = t = None
        value = obj.get("value", 1.0)
    if (
        type(rid) is str
        and rid
        and type(iid) is str
        and iid
        and type(lt) is str
        and lt
        and type(t) is int
        and MIN_EVENT_TIME_MS <= t < MAX_EVENT_TIME_MS
        and type(value) is float
        and math.isfinite(value)
    ):
        return make_label(rid, iid, lt, t, value)
    kind = "label"
    tv = type(value)
    if value is None:
        value = 1.0
    elif tv is int:
        value = float(value)
    elif tv is not float or not math.isfinite(value):
        raise BadEvent(f"label: field 'value' must be a finite number, got {_describe(value)}")
    return make_label(
        _id(obj, "request_id", kind),
        _id(obj, "impression_id", kind),
        _id(obj, "label_type", kind),
        _time(obj, kind),
        value,
    )


_PARSERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "impression": _impression,
    "feature_snapshot": _snapshot,
    "label": _label,
}


def event_from_json(obj: Any) -> Event:
    """Build an event from its docs/wire-format.md JSON form (a decoded object with a ``type`` field).

    Unknown extra fields are ignored (forward compatibility); missing or mistyped ones raise
    :class:`BadEvent` naming the field.
    """
    try:
        parser = _PARSERS[obj["type"]] if type(obj) is dict else None
    except (KeyError, TypeError):  # no "type", or an unknown / unhashable one
        parser = None
    if parser is None:
        _bad_type(obj)
    return parser(obj)


def impression_of(
    rid: str, iid: str, user: str, item: str, t: int, pos: int, ctx: dict[str, str]
) -> Impression | None:
    """The impression of a decoded Avro record's fields (typed by the schema), or None when a value
    rule fails (:func:`event_from_avro` gives the reason)."""
    if rid and iid and MIN_EVENT_TIME_MS <= t < MAX_EVENT_TIME_MS and MIN_POSITION <= pos <= MAX_POSITION:
        return make_impression(rid, iid, user, item, t, pos, ctx)
    return None


def snapshot_of(rid: str, t: int, sparse: dict[str, str], dense: dict[str, float]) -> FeatureSnapshot | None:
    """Like :func:`impression_of`, for a feature snapshot."""
    if rid and MIN_EVENT_TIME_MS <= t < MAX_EVENT_TIME_MS and (not dense or _all_float(dense)):
        return make_snapshot(rid, t, sparse, dense)
    return None


def label_of(rid: str, iid: str, label_type: str, t: int, value: float) -> Label | None:
    """Like :func:`impression_of`, for a label."""
    if rid and iid and label_type and MIN_EVENT_TIME_MS <= t < MAX_EVENT_TIME_MS and math.isfinite(value):
        return make_label(rid, iid, label_type, t, value)
    return None


#: record name -> its event built from the record's fields in schema order (None: a value rule fails)
AVRO_BUILDERS: dict[str, Callable[..., Event | None]] = {
    "Impression": impression_of,
    "FeatureSnapshot": snapshot_of,
    "Label": label_of,
}
_AVRO_FORMS: dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[[dict[str, Any]], Event]]] = {
    "Impression": (itemgetter(*IMPRESSION_FIELDS), _impression),
    "FeatureSnapshot": (itemgetter(*SNAPSHOT_FIELDS), _snapshot),
    "Label": (itemgetter(*LABEL_FIELDS), _label),
}


def event_from_avro(record_name: str, record: dict[str, Any]) -> Event:
    """Build an event from a record decoded with its current Avro schema (every field present, the
    types guaranteed by the schema): only the value rules are checked (non-empty ids, event time in
    range, finite numbers), with the same reasons as :func:`event_from_json`."""
    try:
        build = AVRO_BUILDERS[record_name]
        fields, parse = _AVRO_FORMS[record_name]
    except KeyError:
        raise BadEvent(
            f"a {record_name} record is not an input event (expected Impression, FeatureSnapshot or Label)"
        ) from None
    return build(*fields(record)) or parse(record)  # parse: the precise reason


def _bad_type(obj: Any) -> NoReturn:
    if type(obj) is not dict:
        raise BadEvent(f"expected a JSON object with a 'type' field, got {_describe(obj)}")
    if "type" not in obj:
        raise BadEvent("missing field 'type' (expected one of impression, feature_snapshot, label)")
    raise BadEvent(f"unknown event type {_describe(obj['type'])} (expected one of impression, feature_snapshot, label)")


_EVENT_FORMS: dict[type, Callable[[Any], dict[str, Any]]] = {
    Impression: dict_former(IMPRESSION_FIELDS, {"type": "impression"}),
    FeatureSnapshot: dict_former(SNAPSHOT_FIELDS, {"type": "feature_snapshot"}),
    Label: dict_former(LABEL_FIELDS, {"type": "label"}),
}

label_to_json: Callable[[Label], dict[str, Any]] = dict_former(LABEL_FIELDS)
label_to_json.__doc__ = "A label's fields without ``type`` (the body of an unmatched record)."


def event_to_json(event: Event) -> dict[str, Any]:
    """The docs/wire-format.md JSON form of ``event`` (inverse of :func:`event_from_json`), with ``type``.
    Its maps are the event's own (events are immutable: do not modify them)."""
    try:
        form = _EVENT_FORMS[type(event)]
    except KeyError:
        raise TypeError(f"not an event: {type(event).__name__}") from None
    return form(event)
