"""Events from decoded Avro records: the schema guarantees the types, the value rules still hold."""

from __future__ import annotations

import math
import re

import pytest

from jobs.core.events import BadEvent, FeatureSnapshot, Impression, Label, event_from_avro, event_to_json

IMP = Impression("r1", "i1", "u1", "v1", 1_700_000_000_000, 2, {"page": "feed"})
SNAP = FeatureSnapshot("r1", 1_700_000_000_000, {"city": "bj"}, {"ctr": 0.5})
LAB = Label("r1", "i1", "click", 1_700_000_001_000, 1.0)


def avro(event: object) -> tuple[str, dict[str, object]]:
    obj = event_to_json(event)  # type: ignore[arg-type]
    kind = obj.pop("type")
    return {"impression": "Impression", "feature_snapshot": "FeatureSnapshot", "label": "Label"}[kind], obj


@pytest.mark.parametrize("event", [IMP, SNAP, LAB])
def test_valid_records_become_their_events(event: object) -> None:
    assert event_from_avro(*avro(event)) == event


@pytest.mark.parametrize(
    ("event", "field", "value", "reason"),
    [
        (IMP, "request_id", "", "'request_id' must be a non-empty string"),
        (IMP, "impression_id", "", "'impression_id' must be a non-empty string"),
        (IMP, "event_time_ms", 2**63 - 1, "from 0 (1970) to"),
        (SNAP, "dense", {"ctr": math.nan}, "must be finite"),
        (SNAP, "event_time_ms", -(2**63), "from 0 (1970) to"),
        (LAB, "label_type", "", "'label_type' must be a non-empty string"),
        (LAB, "value", math.inf, "'value' must be a finite number"),
    ],
)
def test_value_rules_give_the_json_parsers_reasons(event: object, field: str, value: object, reason: str) -> None:
    name, record = avro(event)
    record[field] = value
    with pytest.raises(BadEvent, match=re.escape(reason)):
        event_from_avro(name, record)


def test_a_record_that_is_not_an_event_is_refused() -> None:
    with pytest.raises(BadEvent, match="Sample record is not an input event"):
        event_from_avro("Sample", {})
