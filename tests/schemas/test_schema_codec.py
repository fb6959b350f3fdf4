"""The single-object codec and the JSON forms: round trips, the wire format, interoperability, errors."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import avro.io
import avro.schema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import (
    RECORDS,
    BadBody,
    BadMagic,
    Codec,
    DecodeError,
    EncodeError,
    InvalidRecord,
    SchemaError,
    TruncatedMessage,
    UnknownFingerprint,
    UnknownRecord,
    WrongRecord,
)
from schemas.json_forms import (
    EVENT_TYPES,
    avro_to_event_json,
    event_json_to_avro,
    from_avro,
    to_avro,
)
from tests.schemas.schema_strategies import DEFAULTS, JSON_FORMS

CODEC = Codec.default()


def test_strategies_cover_every_record() -> None:
    assert set(JSON_FORMS) == set(RECORDS) == set(DEFAULTS)


@pytest.mark.parametrize("record", RECORDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_json_avro_bytes_avro_json(record: str, data: st.DataObject) -> None:
    obj = data.draw(JSON_FORMS[record])
    expected = {**DEFAULTS[record], **obj}
    avro_dict = to_avro(record, obj)
    assert avro_dict == expected and list(avro_dict) == [f["name"] for f in CODEC.schema(record)["fields"]]
    encoded = CODEC.encode(record, avro_dict)
    assert encoded[:2] == b"\xc3\x01" and encoded[2:10] == CODEC.fingerprint(record)
    name, decoded = CODEC.decode(encoded)
    assert name == record and decoded == avro_dict
    assert CODEC.decode(encoded, expected=record) == avro_dict
    back = from_avro(record, decoded)
    assert back == expected
    assert json.loads(json.dumps(back)) == expected  # the JSON form is plain JSON
    assert to_avro(record, back, validate=False) == avro_dict
    assert CODEC.encode(record, avro_dict, validate=True) == encoded


@pytest.mark.parametrize("tag", sorted(EVENT_TYPES))
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_event_round_trip_with_type(tag: str, data: st.DataObject) -> None:
    record = EVENT_TYPES[tag]
    obj = {"type": tag, **data.draw(JSON_FORMS[record])}
    name, avro_dict = event_json_to_avro(obj)
    assert name == record and "type" not in avro_dict
    decoded_name, decoded = CODEC.decode(CODEC.encode(name, avro_dict))
    event = avro_to_event_json(decoded_name, decoded)
    assert next(iter(event)) == "type"
    assert event == {"type": tag, **DEFAULTS[record], **obj}


@pytest.mark.parametrize("record", RECORDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_interoperates_with_the_avro_reference_implementation(record: str, data: st.DataObject) -> None:
    """Bytes from our codec read with the `avro` package, and the reverse."""
    avro_dict = to_avro(record, data.draw(JSON_FORMS[record]))
    schema = avro.schema.parse(json.dumps(CODEC.schema(record)))
    encoded = CODEC.encode(record, avro_dict)
    assert avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(encoded[10:]))) == avro_dict
    out = io.BytesIO()
    avro.io.DatumWriter(schema).write(avro_dict, avro.io.BinaryEncoder(out))
    assert CODEC.decode(b"\xc3\x01" + schema.fingerprint("CRC-64-AVRO") + out.getvalue()) == (record, avro_dict)


def test_design_examples() -> None:
    lines = [
        '{"type":"impression","request_id":"r1","impression_id":"i1","user_id":"u1","item_id":"v9",'
        '"event_time_ms":1700000000000,"position":0,"context":{"page":"feed"}}',
        '{"type":"feature_snapshot","request_id":"r1","event_time_ms":1700000000000,"sparse":{"city":"bj"},'
        '"dense":{"u_ctr_7d":0.031}}',
        '{"type":"label","request_id":"r1","impression_id":"i1","label_type":"click",'
        '"event_time_ms":1700000030000,"value":1.0}',
    ]
    for line in lines:
        obj = json.loads(line)
        name, avro_dict = event_json_to_avro(obj)
        assert avro_to_event_json(*CODEC.decode(CODEC.encode(name, avro_dict))) == obj


def test_minimal_events_get_the_design_defaults() -> None:
    _, imp = event_json_to_avro({"type": "impression", "request_id": "r", "impression_id": "i", "user_id": "u",
                                 "item_id": "v", "event_time_ms": 1})
    assert imp["position"] == 0 and imp["context"] == {}
    _, snap = event_json_to_avro({"type": "feature_snapshot", "request_id": "r", "event_time_ms": 1})
    assert snap["sparse"] == {} and snap["dense"] == {}
    _, label = event_json_to_avro({"type": "label", "request_id": "r", "impression_id": "i",
                                   "label_type": "click", "event_time_ms": 2})
    assert label["value"] == 1.0
    fast = to_avro("FeatureSnapshot", {"request_id": "r", "event_time_ms": 1}, validate=False)
    fast["sparse"]["x"] = "y"  # defaults are fresh objects, never shared
    assert to_avro("FeatureSnapshot", {"request_id": "r", "event_time_ms": 1}, validate=False)["sparse"] == {}


def test_encode_fills_defaults_and_ignores_unknown_keys() -> None:
    """The runtime encodes event JSON forms directly: "type" is ignored, optional fields get defaults."""
    event = {"type": "label", "request_id": "r", "impression_id": "i", "label_type": "click", "event_time_ms": 9}
    assert CODEC.decode(CODEC.encode("Label", event)) == ("Label", {**event_json_to_avro(event)[1]})
    assert CODEC.decode(CODEC.encode("Label", event), expected="Label")["value"] == 1.0


# --------------------------------------------------------------------------- errors

IMPRESSION = {"request_id": "r1", "impression_id": "i1", "user_id": "u1", "item_id": "v9",
              "event_time_ms": 1_700_000_000_000, "position": 3, "context": {"page": "feed"}}
MESSAGE = CODEC.encode("Impression", IMPRESSION)


def test_error_hierarchy() -> None:
    for exc in (BadMagic, TruncatedMessage, UnknownFingerprint, WrongRecord, BadBody):
        assert issubclass(exc, DecodeError) and issubclass(exc, SchemaError)
    for exc in (EncodeError, InvalidRecord, UnknownRecord):
        assert issubclass(exc, SchemaError)


@pytest.mark.parametrize(
    ("data", "error", "shown"),
    [
        (b"", TruncatedMessage, "message of 0 bytes"),
        (b"\xc3", TruncatedMessage, "[c3]"),
        (b'{"type":"impression"}', BadMagic, "got [7b 22 74 79"),
        (b"\x00\x00\x00\x00\x00\x05" + MESSAGE[10:], BadMagic, "00 00 00 00 00 05"),  # Confluent framing
        (b"\xc3\x01\x01\x02", TruncatedMessage, "message of 4 bytes"),
        (b"\xc3\x01" + bytes(range(8)) + MESSAGE[10:], UnknownFingerprint, "0001020304050607"),
        (MESSAGE + b"\x00\x01", BadBody, "2 trailing bytes"),
        (MESSAGE[:10], TruncatedMessage, "body of 0 bytes"),
    ],
)
def test_decode_errors_name_what_was_received(data: bytes, error: type[DecodeError], shown: str) -> None:
    with pytest.raises(error) as info:
        CODEC.decode(data)
    assert shown in str(info.value)


def test_every_truncation_is_detected() -> None:
    sample = to_avro("Sample", {
        "sample_id": "i1:click:POSITIVE", "task": "click", "request_id": "r1", "impression_id": "i1",
        "user_id": "u1", "item_id": "v9", "position": 2, "context": {"page": "feed"},
        "impression_time_ms": 1_700_000_000_000, "label": 1, "attribution": "POSITIVE",
        "label_time_ms": 1_700_000_030_000, "delay_ms": 30_000, "emit_time_ms": 1_700_000_030_000,
        "sparse": {"city": "bj"}, "dense": {"u_ctr_7d": 0.031}, "has_snapshot": True})
    data = CODEC.encode("Sample", sample)
    for cut in range(len(data)):
        with pytest.raises(TruncatedMessage, match=f"message of {cut} bytes|{cut}-byte message"):
            CODEC.decode(data[:cut])


def test_bad_bodies() -> None:
    # a string whose bytes are not UTF-8
    body = bytearray(MESSAGE)
    body[11] = 0xFF
    with pytest.raises(BadBody, match=r"Impression \(current\) body of \d+ bytes.*UnicodeDecodeError"):
        CODEC.decode(bytes(body))
    # an enum index outside the symbols
    label = {"request_id": "r", "impression_id": "i", "label_type": "c", "event_time_ms": 5, "value": 1.0,
             "reason": "duplicate"}
    data = bytearray(CODEC.encode("UnmatchedLabel", label))
    assert data[-1] == 4  # zig-zag 2
    data[-1] = 40
    with pytest.raises(BadBody, match=r"UnmatchedLabel .*enum symbol or union branch index is out of range"):
        CODEC.decode(bytes(data))
    # a union branch index outside ["null", "long"]
    negative = {**SAMPLE, "sample_id": "i1:click:NEGATIVE", "attribution": "NEGATIVE", "label": 0,
                "label_time_ms": None, "delay_ms": None}
    data = bytearray(CODEC.encode("Sample", negative))
    at = data.index(b"\x02\x00\x00", 20)  # attribution NEGATIVE (index 1), then two null branches
    data[at + 1] = 0x08
    with pytest.raises(BadBody, match=r"Sample .*union branch index is out of range"):
        CODEC.decode(bytes(data))


def test_expected_record() -> None:
    assert CODEC.decode(MESSAGE, expected="Impression") == IMPRESSION
    with pytest.raises(WrongRecord, match=r"expected a Label message, got Impression \(.*b04f|expected a Label"):
        CODEC.decode(MESSAGE, expected="Label")
    with pytest.raises(UnknownRecord, match="Nope"):
        CODEC.decode(MESSAGE, expected="Nope")


def test_decode_accepts_bytearray_and_memoryview() -> None:
    assert CODEC.decode(bytearray(MESSAGE)) == ("Impression", IMPRESSION)
    assert CODEC.decode(memoryview(MESSAGE)) == ("Impression", IMPRESSION)
    assert CODEC.record_name(MESSAGE) == "Impression"
    with pytest.raises(DecodeError, match="expected bytes, got NoneType"):
        CODEC.decode(None)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("record", "change", "match"),
    [
        ("Impression", {"user_id": None}, "cannot encode Impression: .*user_id"),
        ("Impression", {"event_time_ms": 2**70}, "cannot encode Impression"),
        ("Impression", {"context": {"page": 1}}, "cannot encode Impression: .*context"),
        ("Impression", {"request_id": "\ud800"}, "cannot encode Impression: UnicodeEncodeError"),
    ],
)
def test_encode_errors(record: str, change: dict[str, Any], match: str) -> None:
    with pytest.raises(EncodeError, match=match):
        CODEC.encode(record, {**IMPRESSION, **change})


def test_encode_missing_field_and_unknown_record() -> None:
    partial = {k: v for k, v in IMPRESSION.items() if k != "item_id"}
    with pytest.raises(EncodeError, match="item_id"):
        CODEC.encode("Impression", partial)
    with pytest.raises(UnknownRecord, match=r"'Nope'; known: .*Impression"):
        CODEC.encode("Nope", IMPRESSION)
    with pytest.raises(UnknownRecord):
        CODEC.fingerprint("Nope")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"position": 2**40}, "position"),
        ({"position": 1.0}, "position"),
        ({"position": True}, "position"),
        ({"colour": "red"}, "unknown field.*colour"),
    ],
)
def test_encode_validate_is_strict(change: dict[str, Any], match: str) -> None:
    CODEC.encode("Impression", {**IMPRESSION, **change})  # fastavro alone lets these through
    with pytest.raises(EncodeError, match=match):
        CODEC.encode("Impression", {**IMPRESSION, **change}, validate=True)


@pytest.mark.parametrize(
    ("record", "obj", "match"),
    [
        ("Impression", {**IMPRESSION, "position": -1}, r"invalid Impression: position: .*greater than or equal "
                                                       r"to 0 \(got -1\)"),
        ("Impression", {**IMPRESSION, "position": "3"}, r"position: .*valid integer \(got '3'\)"),
        ("Impression", {**IMPRESSION, "colour": "red"}, r"colour: Extra inputs are not permitted \(got 'red'\)"),
        ("Impression", {k: v for k, v in IMPRESSION.items() if k != "user_id"}, "user_id: field required"),
        ("Impression", {**IMPRESSION, "type": "label"}, r"type 'label' \(expected 'impression'\)"),
        ("Sample", {"type": "sample"}, "only events carry a type"),
        ("FeatureSnapshot", {"request_id": "r", "event_time_ms": 1, "dense": {"x": float("inf")}},
         r"dense.x: .*finite number \(got inf\)"),
        ("Label", {"request_id": "r", "impression_id": "i", "label_type": "c", "event_time_ms": True},
         r"event_time_ms: .*valid integer \(got True\)"),
        ("UnmatchedLabel", {"request_id": "r", "impression_id": "i", "label_type": "c", "event_time_ms": 1,
                            "reason": "late"}, r"reason: .*'no_impression', 'beyond_horizon' or 'duplicate'"),
        ("Impression", [1, 2], "expected a JSON object, got list"),
    ],
)
def test_to_avro_validation_errors(record: str, obj: Any, match: str) -> None:
    with pytest.raises(InvalidRecord, match=match) as info:
        to_avro(record, obj)
    assert "\n" not in str(info.value)


SAMPLE = {
    "sample_id": "i1:click:LATE_POSITIVE", "task": "click", "request_id": "r1", "impression_id": "i1",
    "user_id": "u1", "item_id": "v9", "position": 0, "context": {}, "impression_time_ms": 1000, "label": 1,
    "attribution": "LATE_POSITIVE", "label_time_ms": 900_000, "delay_ms": 899_000, "emit_time_ms": 900_000,
    "sparse": {}, "dense": {}, "has_snapshot": False,
}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"sample_id": "i1:click:POSITIVE"}, "sample_id must be 'i1:click:LATE_POSITIVE'"),
        ({"label": 0}, "label must be 1 on LATE_POSITIVE, got 0"),
        ({"delay_ms": 5}, "delay_ms must be label_time_ms - impression_time_ms = 899000, got 5"),
        ({"label_time_ms": None}, "required on LATE_POSITIVE"),
        ({"label": 2}, r"label: .*less than or equal to 1"),
        ({"attribution": "LATE"}, "attribution"),
    ],
)
def test_sample_consistency(change: dict[str, Any], match: str) -> None:
    assert to_avro("Sample", SAMPLE) == SAMPLE
    with pytest.raises(InvalidRecord, match=match):
        to_avro("Sample", {**SAMPLE, **change})


def test_event_conversion_errors() -> None:
    with pytest.raises(InvalidRecord, match="type 'click'; expected one of impression, feature_snapshot, label"):
        event_json_to_avro({"type": "click"})
    with pytest.raises(InvalidRecord, match="type missing"):
        event_json_to_avro({"request_id": "r"})
    with pytest.raises(InvalidRecord, match="Sample is not an event record"):
        avro_to_event_json("Sample", SAMPLE)
    with pytest.raises(UnknownRecord):
        avro_to_event_json("Nope", {})
    with pytest.raises(UnknownRecord):
        to_avro("Nope", {})
    with pytest.raises(InvalidRecord, match="label_time_ms"):
        from_avro("Sample", {**SAMPLE, "label_time_ms": None}, validate=True)


def test_default_codec_is_cached_and_thread_safe() -> None:
    assert Codec.default() is CODEC
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(300):
                rec = {**IMPRESSION, "impression_id": f"i{i}-{j}", "position": j}
                assert CODEC.decode(CODEC.encode("Impression", rec), expected="Impression") == rec
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
