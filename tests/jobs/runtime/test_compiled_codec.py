"""The compiled flat-record encoder writes exactly the codec's bytes, and fails like it, naming the field; the
runtime's own event decoders give what the codec gives."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.core.events import Label, event_from_avro
from jobs.core.outputs import ATTRIBUTIONS, Sample, UnmatchedLabel
from jobs.runtime.kafka_io import WireFormat
from schemas.codec import MAGIC, Codec
from schemas.compiled import Unsupported, compile_encoder, long_bytes
from schemas.errors import EncodeError
from tests.schemas.without_extension import run_without_extension

CODEC = Codec.default()
WIRE = WireFormat(CODEC)
LONGS = st.integers(-(2**63), 2**63 - 1)
INTS = st.integers(-(2**31), 2**31 - 1)
TEXT = st.text(max_size=200)  # beyond 63 UTF-8 bytes the length prefix takes two bytes
FINITE = st.floats(allow_nan=False)
SAMPLES = st.builds(
    Sample,
    sample_id=TEXT,
    task=TEXT,
    request_id=TEXT,
    impression_id=TEXT,
    user_id=TEXT,
    item_id=TEXT,
    position=INTS,
    context=st.dictionaries(TEXT, TEXT, max_size=4),
    impression_time_ms=LONGS,
    label=st.sampled_from([0, 1]),
    attribution=st.sampled_from(ATTRIBUTIONS),
    label_time_ms=st.none() | LONGS,
    delay_ms=st.none() | LONGS,
    emit_time_ms=LONGS,
    sparse=st.dictionaries(TEXT, TEXT, max_size=4),
    dense=st.dictionaries(TEXT, FINITE | st.sampled_from([math.inf, -math.inf]), max_size=4),
    has_snapshot=st.booleans(),
)


def codec_bytes(sample: Sample) -> bytes:
    return CODEC.encode("Sample", sample.to_json())


@settings(max_examples=300, deadline=None)
@given(SAMPLES)
def test_samples_encode_to_the_codecs_bytes(sample: Sample) -> None:
    assert WIRE.encode_sample(sample) == codec_bytes(sample)
    assert CODEC.decode(WIRE.encode_sample(sample), "Sample") == CODEC.decode(codec_bytes(sample), "Sample")


def test_the_same_maps_again_and_changed_ones_give_their_own_bytes() -> None:
    features = {"city": "bj", "device": "ios"}
    first = Sample("i:click:NEGATIVE", "click", "r", "i", "u", "v", 0, {}, 1, 0, "NEGATIVE", None, None, 2,
                   features, {"ctr": 0.5}, True)
    second = Sample("j:click:NEGATIVE", "click", "r", "j", "u", "w", 1, {}, 1, 0, "NEGATIVE", None, None, 2,
                    features, {"ctr": 0.5}, True)
    other = Sample("k:click:NEGATIVE", "click", "r", "k", "u", "w", 1, {}, 1, 0, "NEGATIVE", None, None, 2,
                   {"city": "sh"}, {}, False)
    for sample in (first, second, other, first):
        assert WIRE.encode_sample(sample) == codec_bytes(sample)


@pytest.mark.parametrize("n", [0, 1, 63, 64, -1, -64, -65, 8191, 8192, 2**35, 1_700_000_000_000, 2**41, 2**62,
                               2**63 - 1, -(2**63)])
def test_longs_are_zigzag_varints(n: int) -> None:
    assert long_bytes(n) == CODEC.encode("Label", {"request_id": "", "impression_id": "", "label_type": "",
                                                   "event_time_ms": n, "value": 0.0})[13:-8]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("sample_id", None, "field 'sample_id'"),
        ("attribution", "MAYBE", "field 'attribution'"),
        ("emit_time_ms", 2**63, "field 'emit_time_ms'"),
        ("position", "3", "field 'position'"),
        ("dense", {"ctr": "high"}, "field 'dense'"),
    ],
)
def test_a_value_that_does_not_fit_names_its_field(field: str, value: Any, reason: str) -> None:
    sample = Sample("s", "click", "r", "i", "u", "v", 0, {}, 1, 0, "NEGATIVE", None, None, 2, {}, {}, False)
    setattr(sample, field, value)
    with pytest.raises(EncodeError, match=f"cannot encode Sample: {reason}"):
        WIRE.encode_sample(sample)


def test_unmatched_labels_still_encode_through_the_codec() -> None:
    record = UnmatchedLabel(Label("r", "i", "click", 5, 1.0), "duplicate", "click")
    assert CODEC.decode(WIRE.encode_unmatched(record), "UnmatchedLabel")["reason"] == "duplicate"


@pytest.mark.parametrize(
    "field_type",
    ["bytes", "float", {"type": "array", "items": "string"}, ["null", "string", "long"],
     {"type": "record", "name": "Inner", "fields": []}, {"type": "long", "logicalType": "timestamp-millis"}],
)
def test_other_field_types_are_refused(field_type: Any) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "f", "type": field_type}]}
    with pytest.raises(Unsupported, match=r"R\.f"):
        compile_encoder(schema, MAGIC)


# -- decoding --------------------------------------------------------------------------------------

EVENT_JSON = st.one_of(
    st.fixed_dictionaries({"type": st.just("impression"), "request_id": TEXT, "impression_id": TEXT,
                           "user_id": TEXT, "item_id": TEXT, "event_time_ms": LONGS, "position": INTS,
                           "context": st.dictionaries(TEXT, TEXT, max_size=4)}),
    st.fixed_dictionaries({"type": st.just("feature_snapshot"), "request_id": TEXT, "event_time_ms": LONGS,
                           "sparse": st.dictionaries(TEXT, TEXT, max_size=4),
                           "dense": st.dictionaries(TEXT, st.floats(), max_size=4)}),
    st.fixed_dictionaries({"type": st.just("label"), "request_id": TEXT, "impression_id": TEXT, "label_type": TEXT,
                           "event_time_ms": LONGS, "value": st.floats()}),
)


ADDRESS = re.compile(r" at 0x[0-9a-f]+")  # fastavro's messages name its BytesIO object


def through_codec(data: bytes) -> Any:
    """What decoding gives through the codec alone: the event, or the exception's type and text."""
    try:
        return event_from_avro(*CODEC.decode(data))
    except Exception as exc:
        return type(exc), ADDRESS.sub("", str(exc))


def through_wire(data: bytes) -> Any:
    try:
        return WIRE.decode_event(data)
    except Exception as exc:
        return type(exc), ADDRESS.sub("", str(exc))


@settings(max_examples=300, deadline=None)
@given(EVENT_JSON)
def test_events_decode_as_through_the_codec(event: dict[str, Any]) -> None:
    data = WIRE.encode_event_json(event)
    assert WIRE._decoders[data[:10]](data) in (None, through_codec(data))  # None: the codec path decides
    assert through_wire(data) == through_codec(data)


@settings(max_examples=300, deadline=None)
@given(EVENT_JSON, st.data())
def test_damaged_messages_fail_as_through_the_codec(event: dict[str, Any], data: st.DataObject) -> None:
    message = bytearray(WIRE.encode_event_json(event))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(10, len(message) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            message[i] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del message[i:]
            if len(message) <= 10:
                break
        else:
            message.insert(i, data.draw(st.integers(0, 255)))
    assert through_wire(bytes(message)) == through_codec(bytes(message))


def varint(n: int) -> bytes:
    return long_bytes(n)


@pytest.mark.parametrize(
    "body",
    [
        # a map written in two blocks, the second with a negative count and a byte size (other writers do)
        varint(1) + b"\x02r" + varint(1) + b"\x02i" + varint(1) + b"\x02l" + varint(5) + b"\x00" * 8,
        b"\x03r" + b"\x02i" + b"\x02l" + varint(5) + b"\x00" * 8,  # a negative string length
        b"\x02r\x02i\x02l" + b"\x80" * 10 + b"\x01" + b"\x00" * 8,  # an 11-byte varint
        b"\x02r\x02i\x02l" + b"\xff" * 9 + b"\x7f" + b"\x00" * 8,  # a varint beyond 64 bits
        b"\x02\xff\x02i\x02l" + varint(5) + b"\x00" * 8,  # not UTF-8
        b"\x02r\x02i\x02l" + varint(5) + b"\x00" * 8 + b"\x00",  # a trailing byte
    ],
)
def test_unusual_label_bodies_go_through_the_codec(body: bytes) -> None:
    data = MAGIC + CODEC.fingerprint("Label") + body
    assert WIRE._decoders[data[:10]](data) is None
    assert through_wire(data) == through_codec(data)


def test_a_map_in_blocks_of_other_writers_decodes_like_the_codec() -> None:
    entry = b"\x06key\x06val"
    context = varint(-1) + varint(len(entry)) + entry + varint(1) + b"\x02k\x02v" + b"\x00"
    body = b"\x02r\x02i\x02u\x02v" + varint(1_700_000_000_000) + varint(3) + context
    data = MAGIC + CODEC.fingerprint("Impression") + body
    event = through_wire(data)
    assert event == through_codec(data)
    assert event.context == {"key": "val", "k": "v"}


WITHOUT_THE_EXTENSION = """
from jobs.core.events import FeatureSnapshot
from jobs.runtime.kafka_io import WireFormat
wire = WireFormat()
event = {"type": "feature_snapshot", "request_id": "r1", "event_time_ms": 5, "sparse": {"c": "x"}, "dense": {"d": 0.5}}
decoded = wire.decode_event(wire.encode_event_json(event))
print(len(wire._decoders), decoded == FeatureSnapshot("r1", 5, {"c": "x"}, {"d": 0.5}))
"""


def test_without_the_native_decoder_events_decode_through_the_codec() -> None:
    done = run_without_extension(WITHOUT_THE_EXTENSION)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "True"]


def test_with_the_native_decoder_each_input_event_has_its_own() -> None:
    events = ("Impression", "FeatureSnapshot", "Label")
    assert sorted(WIRE._decoders) == sorted(MAGIC + CODEC.fingerprint(name) for name in events)
