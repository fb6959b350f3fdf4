"""The fast Sample contract check (schemas.contract): it accepts only what the pydantic model accepts,
and the trainer's decode_sample holds Kafka values to it."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from synth import make_samples

from schemas import Codec
from schemas.contract import UnsupportedRule, contract_check, decoded_contract_check
from schemas.models import Sample as SampleRecord
from schemas.records import POSITION_MAX, POSITION_MIN
from tests.schemas.schema_strategies import avro_values
from trainer.samples import BadRecord, decode_sample, parse_sample

CODEC = Codec.default()
CHECK = contract_check(SampleRecord)
GOOD, _ = make_samples(40, seed=7)


def model_accepts(record: Any) -> bool:
    try:
        SampleRecord.model_validate(record)
    except ValidationError:
        return False
    return True


def test_valid_samples_pass_and_decode_as_parse_sample_reads_them() -> None:
    assert {r["attribution"] for r in GOOD} == {"POSITIVE", "NEGATIVE", "LATE_POSITIVE"}
    for record in GOOD:
        assert CHECK(record)
        assert decode_sample(CODEC.encode("Sample", record), CODEC) == parse_sample(record)
    negative = next(r for r in GOOD if r["attribution"] == "NEGATIVE")
    assert CHECK({k: v for k, v in negative.items() if k not in ("label_time_ms", "delay_ms")})  # defaults


@pytest.mark.parametrize(
    "change",
    [
        {"label": 2},
        {"label": True},
        {"position": -1},
        {"position": 2**31},
        {"position": 1.0},
        {"emit_time_ms": 2**63},
        {"attribution": "MAYBE"},
        {"user_id": 7},
        {"context": {"page": 1}},
        {"dense": {"x": math.nan}},
        {"dense": {"x": math.inf}},
        {"dense": {"x": "0.5"}},
        {"has_snapshot": 1},
        {"extra": "field"},
        {"sample_id": "not:the:right:id"},
    ],
)
def test_records_the_model_refuses_are_refused(change: dict[str, Any]) -> None:
    record = {**GOOD[0], **change}
    assert not model_accepts(record) and not CHECK(record)


def test_a_missing_field_and_an_inconsistent_label_are_refused() -> None:
    positive = next(r for r in GOOD if r["attribution"] == "POSITIVE")
    assert not CHECK({k: v for k, v in positive.items() if k != "user_id"})
    assert not CHECK({**positive, "delay_ms": positive["delay_ms"] + 1})  # the model's own validator
    assert not CHECK({**positive, "label": 0})
    assert not CHECK([positive])


def test_a_refused_kafka_value_is_dead_lettered_with_the_models_reason() -> None:
    record = {**GOOD[0], "dense": {"u_ctr_7d": math.nan}}
    with pytest.raises(BadRecord, match=r"^invalid Sample: dense\.u_ctr_7d: Input should be a finite number$"):
        decode_sample(CODEC.encode("Sample", record), CODEC)
    negative = next(r for r in GOOD if r["attribution"] == "NEGATIVE")
    with pytest.raises(BadRecord, match=r"^invalid Sample: record: Value error, label must be 0 on NEGATIVE, got 1$"):
        decode_sample(CODEC.encode("Sample", {**negative, "label": 1}), CODEC)


VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(GOOD), st.sampled_from([*sorted(GOOD[0]), "extra"]), VALUES)
def test_the_check_agrees_with_the_model_on_any_field_value(good: dict[str, Any], field: str, value: Any) -> None:
    record = {**good, field: value}
    assert CHECK(record) == model_accepts(record)


SAMPLE_SCHEMA = CODEC.schema("Sample")
DECODED_CHECK = decoded_contract_check(SampleRecord, SAMPLE_SCHEMA)
AVRO_FIELDS = {f["name"]: avro_values(f["type"], namespace="odl") for f in SAMPLE_SCHEMA["fields"]}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(GOOD), st.data())
def test_the_decoded_check_agrees_with_the_model_on_any_decodable_record(good: dict[str, Any], data: Any) -> None:
    """Records the codec decodes (any Avro value in one or two fields of a good one, or in all of
    them): the check that leaves out what decoding guarantees still accepts exactly what the model does."""
    changed = data.draw(st.lists(st.sampled_from(sorted(AVRO_FIELDS)), max_size=2))
    if data.draw(st.booleans()) and not changed:
        changed = sorted(AVRO_FIELDS)
    record = {**good, **{name: data.draw(AVRO_FIELDS[name]) for name in changed}}
    decoded = CODEC.decode(CODEC.encode("Sample", record), "Sample")
    assert DECODED_CHECK(decoded) == model_accepts(decoded) == CHECK(decoded)


def test_the_decoded_check_keeps_only_what_decoding_does_not_guarantee() -> None:
    checked = {name for name, _ in DECODED_CHECK.__closure__[1].cell_contents}  # type: ignore[index]
    assert checked == {"position", "label", "dense"}  # >= 0, <= 1, finite: bounds the Avro types do not hold
    positive = next(r for r in GOOD if r["attribution"] == "POSITIVE")
    assert DECODED_CHECK(positive)
    for change in ({"position": -1}, {"label": 2}, {"dense": {"x": math.inf}}, {"delay_ms": 1}, {"task": "other"}):
        assert not DECODED_CHECK({**positive, **change}), change


def test_a_schema_that_does_not_match_the_model_gets_no_decoded_check() -> None:
    fields = SAMPLE_SCHEMA["fields"]
    for changed in (
        [f for f in fields if f["name"] != "has_snapshot"],
        [{**f, "type": "string"} if f["name"] == "position" else f for f in fields],
        [{**f, "type": ["null", "string"]} if f["name"] == "delay_ms" else f for f in fields],
        [{**f, "type": {"type": "map", "values": "long"}} if f["name"] == "sparse" else f for f in fields],
    ):
        with pytest.raises(UnsupportedRule):
            decoded_contract_check(SampleRecord, {**SAMPLE_SCHEMA, "fields": changed})


def test_a_rule_the_check_does_not_know_is_refused_when_the_check_is_built() -> None:
    class Short(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")
        name: str = Field(max_length=3)

    class Before(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")
        name: str

        @model_validator(mode="before")
        @classmethod
        def _lower(cls, data: Any) -> Any:
            return data

    class Lax(BaseModel):
        name: str

    for model in (Short, Before, Lax):
        with pytest.raises(UnsupportedRule):
            contract_check(model)


def test_the_position_bound_is_the_one_schemas_defines_for_both_halves() -> None:
    """The join refuses the same positions at its input (jobs.core.events), so it never emits one the
    contract refuses; offline files (parse_sample) are held to the same bound."""
    for position in (POSITION_MIN, POSITION_MAX):
        record = {**GOOD[0], "position": position}
        assert CHECK(record) and decode_sample(CODEC.encode("Sample", record), CODEC).position == position
        assert parse_sample(record).position == position
    for position in (POSITION_MIN - 1, POSITION_MAX + 1):
        record = {**GOOD[0], "position": position}
        assert not CHECK(record) and not model_accepts(record)
        refused = rf"^field 'position' must be a slot from 0 to {POSITION_MAX}, got {position}$"
        with pytest.raises(BadRecord, match=refused):
            parse_sample(record)
    with pytest.raises(BadRecord, match=r"^invalid Sample: position: Input should be greater than or equal to 0"):
        decode_sample(CODEC.encode("Sample", {**GOOD[0], "position": -1}), CODEC)
