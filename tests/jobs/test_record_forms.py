"""Every runtime form of a record carries exactly its schema's fields (schemas.records, from the .avsc).

Adding a field to an ``.avsc`` file breaks these tests (and the import-time checks of the join core)
until the value types, their JSON forms, the state's and Flink's byte layouts and the generators
carry it: ``Codec.encode`` would otherwise fill the default and hide the miss.
"""

from __future__ import annotations

import itertools

import pytest

from jobs.bench.replay import synth_events
from jobs.core import (
    BadEvent,
    FeatureSnapshot,
    Impression,
    Label,
    RequestState,
    SampleJoin,
    event_from_json,
    event_to_json,
)
from jobs.core.join import ATTRIBUTIONS, UNMATCHED_REASONS
from jobs.core.local import LocalJoinRunner
from jobs.generate import Generator, GeneratorConfig
from jobs.runtime.kafka_io import WireFormat
from jobs.runtime.state_bytes import state_from_bytes, state_to_bytes
from jobs.runtime.summary import ATTRIBUTION_ORDER, REASON_ORDER
from schemas import records
from schemas.errors import SchemaDefinitionError

T0 = 1_700_000_000_000
EVENTS = [
    Impression("r1", "i1", "u1", "v1", T0, 3, {"page": "feed"}),
    FeatureSnapshot("r1", T0 + 10, {"city": "bj"}, {"ctr": 0.5}),
    Label("r1", "i1", "click", T0 + 1_000, 2.0),
    Impression("r2", "i2", "u2", "v2", T0 + 5, 0, {}),
    Label("r2", "i2", "click", T0 + 900_000, 1.0),  # after W: NEGATIVE then LATE_POSITIVE
    Label("r2", "i2", "click", T0 + 900_001, 1.0),  # duplicate
    Label("r3", "i3", "click", T0 + 2_000, 1.0),  # no impression
]


def keys(obj: dict[str, object]) -> tuple[str, ...]:
    return tuple(k for k in obj if k != "type")


def joined() -> LocalJoinRunner:
    runner = LocalJoinRunner(SampleJoin())
    for event in EVENTS:
        runner.process(event)
    runner.finish()
    return runner


def test_event_value_types_and_json_forms_carry_the_schema_fields() -> None:
    for event in EVENTS:
        obj = event_to_json(event)
        record = records.EVENT_TYPES[obj["type"]]
        assert keys(obj) == records.FIELDS[record]
        assert tuple(type(event).__dataclass_fields__) == records.FIELDS[record]
        assert event_from_json(obj) == event


def test_sample_and_unmatched_json_forms_carry_the_schema_fields() -> None:
    runner = joined()
    assert {s.attribution for s in runner.samples} == set(ATTRIBUTIONS)
    assert {u.reason for u in runner.unmatched} == {"duplicate", "no_impression"}
    for sample in runner.samples:
        assert keys(sample.to_json()) == records.SAMPLE_FIELDS
    for unmatched in runner.unmatched:
        assert keys(unmatched.to_json()) == records.UNMATCHED_FIELDS


def test_forms_pass_the_codecs_strict_validation_and_round_trip() -> None:
    wire = WireFormat()
    runner = joined()
    for sample in runner.samples:
        obj = sample.to_json()
        wire.codec.validate("Sample", obj)  # rejects unknown fields, checks types
        assert wire.codec.decode(wire.encode_sample(sample), "Sample") == obj
    for unmatched in runner.unmatched:
        obj = unmatched.to_json()
        wire.codec.validate("UnmatchedLabel", obj)
        assert wire.codec.decode(wire.encode_unmatched(unmatched), "UnmatchedLabel") == obj
    for event in EVENTS:
        assert wire.decode_event(wire.encode_event_json(event_to_json(event))) == event


def test_state_bytes_keep_every_field_of_the_events() -> None:
    state = RequestState("r1", ("click",))
    join = SampleJoin()
    from jobs.core.join import Step

    step = Step(state, [], [], [], [])
    for event in (
        Impression("r1", "i1", "u1", "v1", T0, 7, {"page": "feed"}),
        Label("r1", "i9", "click", T0 + 3, 0.5),  # an orphan
        FeatureSnapshot("r1", T0 + 10_000_000, {"a": "b"}, {"x": 1.5}),  # too late to join: kept as is
    ):
        join.event_into(step, event, T0 - 10_000)
    assert step.state is not None
    again = state_from_bytes(state_to_bytes(step.state))
    assert again == step.state


def test_flink_event_bytes_keep_every_field() -> None:
    flink_functions = pytest.importorskip("jobs.runtime.flink.functions")
    for event in EVENTS:
        assert flink_functions.event_from_bytes(flink_functions.event_to_bytes(event)) == event


def test_generators_write_exactly_the_schema_fields() -> None:
    generated = itertools.islice((e for _, e in Generator(GeneratorConfig(impressions=300, seed=3)).events()), 2000)
    synthetic = itertools.islice(synth_events(2000, seed=3), 2000)
    seen = set()
    for event in itertools.chain(generated, synthetic):
        record = records.EVENT_TYPES[event["type"]]
        assert keys(event) == records.FIELDS[record], event
        seen.add(record)
    assert seen == set(records.EVENT_TYPES.values())


def test_enums_come_from_the_schemas() -> None:
    assert ATTRIBUTIONS == ATTRIBUTION_ORDER == records.enum_symbols("Sample", "attribution")
    assert UNMATCHED_REASONS == REASON_ORDER == records.enum_symbols("UnmatchedLabel", "reason")


def test_a_form_that_misses_a_schema_field_is_refused() -> None:
    with pytest.raises(SchemaDefinitionError, match="missing \\['has_snapshot'\\]"):
        records.check_fields("Sample", records.SAMPLE_FIELDS[:-1], "a form")
    with pytest.raises(SchemaDefinitionError, match="unknown \\['LATE'\\]"):
        records.check_symbols("Sample", "attribution", ("POSITIVE", "NEGATIVE", "LATE"), "a form")


@pytest.mark.parametrize("position", [records.POSITION_MIN - 1, records.POSITION_MAX + 1])
def test_a_position_outside_the_schemas_bound_is_a_bad_event_naming_field_and_bound(position: int) -> None:
    """The join refuses what the Sample contract would refuse downstream (the bound of schemas.records);
    through JSON and through Avro alike (an Avro int holds a negative position)."""
    impression = {**event_to_json(EVENTS[0]), "position": position}
    reason = (f"impression: field 'position' must be a zero-based slot from {records.POSITION_MIN} to "
              f"{records.POSITION_MAX}, got int {position}")
    with pytest.raises(BadEvent) as refused:
        event_from_json(impression)
    assert str(refused.value) == reason
    if position <= records.POSITION_MAX:  # an Avro int cannot hold the other
        with pytest.raises(BadEvent) as refused:
            WireFormat().decode_event(WireFormat().encode_event_json(impression))
        assert str(refused.value) == reason
    assert event_from_json({**impression, "position": records.POSITION_MIN}).position == records.POSITION_MIN
