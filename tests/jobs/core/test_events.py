"""The JSON form of events (docs/wire-format.md): parsing, defaults, precise rejection reasons, round trip."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.core import BadEvent, Event, FeatureSnapshot, Impression, Label, event_from_json, event_to_json
from jobs.core.events import MAX_EVENT_TIME_MS, MAX_POSITION, MIN_EVENT_TIME_MS, MIN_POSITION
from jobs.errors import JobError

IMPRESSION = {"type": "impression", "request_id": "r1", "impression_id": "i1", "user_id": "u1", "item_id": "v9",
              "event_time_ms": 1700000000000, "position": 0, "context": {"page": "feed"}}
SNAPSHOT = {"type": "feature_snapshot", "request_id": "r1", "event_time_ms": 1700000000000,
            "sparse": {"city": "bj"}, "dense": {"u_ctr_7d": 0.031}}
LABEL = {"type": "label", "request_id": "r1", "impression_id": "i1", "label_type": "click",
         "event_time_ms": 1700000030000, "value": 1.0}


E = TypeVar("E", Impression, FeatureSnapshot, Label)


def as_(kind: type[E], obj: dict[str, Any]) -> E:
    event = event_from_json(obj)
    assert isinstance(event, kind)
    return event


def test_design_examples_parse() -> None:
    assert event_from_json(IMPRESSION) == Impression("r1", "i1", "u1", "v9", 1700000000000, 0, {"page": "feed"})
    assert event_from_json(SNAPSHOT) == FeatureSnapshot("r1", 1700000000000, {"city": "bj"}, {"u_ctr_7d": 0.031})
    assert event_from_json(LABEL) == Label("r1", "i1", "click", 1700000030000, 1.0)


def test_optional_fields_default() -> None:
    imp = {k: v for k, v in IMPRESSION.items() if k not in ("position", "context")}
    assert event_from_json(imp) == Impression("r1", "i1", "u1", "v9", 1700000000000, 0, {})
    snap = {k: v for k, v in SNAPSHOT.items() if k not in ("sparse", "dense")}
    assert event_from_json(snap) == FeatureSnapshot("r1", 1700000000000, {}, {})
    label = {k: v for k, v in LABEL.items() if k != "value"}
    assert event_from_json(label) == Label("r1", "i1", "click", 1700000030000, 1.0)
    assert as_(Impression, {**IMPRESSION, "position": None, "context": None}).position == 0


def test_numbers_are_normalised() -> None:
    assert as_(Label, {**LABEL, "value": 2}).value == 2.0
    assert isinstance(as_(Label, {**LABEL, "value": 2}).value, float)
    assert as_(FeatureSnapshot, {**SNAPSHOT, "dense": {"a": 1}}).dense == {"a": 1.0}
    assert event_from_json({**LABEL, "event_time_ms": 1.7e12}).event_time_ms == 1_700_000_000_000


def test_unknown_extra_fields_are_ignored() -> None:
    assert event_from_json({**LABEL, "extra": [1, 2]}) == event_from_json(LABEL)


@pytest.mark.parametrize(
    ("obj", "needle"),
    [
        ([1, 2], "expected a JSON object"),
        ("text", "expected a JSON object"),
        ({"request_id": "r1"}, "missing field 'type'"),
        ({**LABEL, "type": "click"}, "unknown event type str 'click'"),
        ({**LABEL, "type": 3}, "unknown event type int 3"),
        ({k: v for k, v in IMPRESSION.items() if k != "request_id"}, "impression: missing field 'request_id'"),
        ({**IMPRESSION, "request_id": ""}, "field 'request_id' must be a non-empty string, got str ''"),
        ({**IMPRESSION, "impression_id": 5}, "field 'impression_id' must be a non-empty string, got int 5"),
        ({**IMPRESSION, "user_id": None}, "field 'user_id' must be a string, got null"),
        ({k: v for k, v in IMPRESSION.items() if k != "item_id"}, "missing field 'item_id'"),
        ({**IMPRESSION, "event_time_ms": "x"}, "field 'event_time_ms' must be an integer"),
        ({**IMPRESSION, "event_time_ms": True}, "field 'event_time_ms' must be an integer"),
        ({**IMPRESSION, "event_time_ms": 1.5}, "field 'event_time_ms' must be an integer"),
        ({**IMPRESSION, "event_time_ms": 2**63}, "from 0 (1970) to"),
        ({k: v for k, v in LABEL.items() if k != "event_time_ms"}, "label: missing field 'event_time_ms'"),
        ({**IMPRESSION, "position": "1"}, "field 'position' must be an integer, got str '1'"),
        ({**IMPRESSION, "position": True}, "field 'position' must be an integer"),
        ({**IMPRESSION, "context": ["a"]}, "field 'context' must be an object of strings"),
        ({**IMPRESSION, "context": {"page": 1}}, "field 'context': value of 'page' must be a string, got int 1"),
        ({**SNAPSHOT, "sparse": {"city": None}}, "field 'sparse': value of 'city' must be a string"),
        ({**SNAPSHOT, "dense": {"x": "0.1"}}, "field 'dense': value of 'x' must be a number, got str"),
        ({**SNAPSHOT, "dense": {"x": True}}, "field 'dense': value of 'x' must be a number"),
        ({**SNAPSHOT, "dense": 3}, "field 'dense' must be an object of numbers"),
        ({**LABEL, "label_type": ""}, "field 'label_type' must be a non-empty string"),
        ({**LABEL, "value": "1"}, "label: field 'value' must be a finite number, got str '1'"),
        ({**LABEL, "value": float("nan")}, "field 'value' must be a finite number"),
    ],
)
def test_bad_events_name_the_field(obj: Any, needle: str) -> None:
    with pytest.raises(BadEvent) as info:
        event_from_json(obj)
    assert needle in str(info.value)
    assert isinstance(info.value, JobError)


def test_long_values_are_shortened_in_reasons() -> None:
    with pytest.raises(BadEvent) as info:
        event_from_json({**IMPRESSION, "user_id": ["x" * 500]})
    assert len(str(info.value)) < 200


def test_events_are_frozen() -> None:
    label = as_(Label, LABEL)
    with pytest.raises(AttributeError):
        label.value = 2.0  # type: ignore[misc]


ids = st.text(min_size=1, max_size=8)
times = st.integers(min_value=MIN_EVENT_TIME_MS, max_value=MAX_EVENT_TIME_MS - 1)
positions = st.integers(MIN_POSITION, MAX_POSITION)
str_maps = st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
float_maps = st.dictionaries(st.text(max_size=5), st.floats(allow_nan=False, allow_infinity=False), max_size=3)
events = st.one_of(
    st.builds(Impression, ids, ids, st.text(max_size=5), st.text(max_size=5), times, positions,
              str_maps),
    st.builds(FeatureSnapshot, ids, times, str_maps, float_maps),
    st.builds(Label, ids, ids, ids, times, st.floats(allow_nan=False, allow_infinity=False)),
)


@given(events)
def test_json_round_trip(event: Event) -> None:
    obj = event_to_json(event)
    assert obj["type"] in ("impression", "feature_snapshot", "label")
    assert event_from_json(obj) == event
