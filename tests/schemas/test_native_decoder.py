"""The native Avro body decoder (schemas/_avro.c) against fastavro, the reference it replaces.

Valid bodies: equal results, types included, for every shipped record and for a schema of every type
the decoder supports. Bad bodies: a DecodeError of the same kind as fastavro's path raises, except
where the native decoder is stricter on purpose (see :func:`stricter`); never another exception.
"""

from __future__ import annotations

import math
from io import BytesIO
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Codec, native
from schemas.codec import HEADER_SIZE
from schemas.errors import BadBody, DecodeError, TruncatedMessage
from schemas.registry import load_schema_set
from tests.jobs.bad_inputs import zigzag
from tests.schemas.schema_strategies import JSON_FORMS, MUTATIONS, avro_values, mutate
from tests.schemas.without_extension import run_without_extension

# Not a skip: `make setup` builds the extension, and a checkout where it silently is not built would
# pass these tests while decoding everything with fastavro.
assert native.AVAILABLE, "schemas/_avro.c is not built: run `make setup` (it needs gcc and the Python headers)"

NATIVE = Codec(load_schema_set())
REFERENCE = Codec(load_schema_set(), native_decoder=False)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALL_TYPES: dict[str, Any] = {
    "type": "record", "name": "AllTypes", "namespace": "test", "fields": [
        {"name": "n", "type": "null"},
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "s", "type": "string"},
        {"name": "y", "type": "bytes"},
        {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "u", "type": ["null", "string", "long", {"type": "array", "items": "int"}]},
        {"name": "m", "type": {"type": "map", "values": ["null", {"type": "double"}]}},
        {"name": "a", "type": {"type": "array", "items": {
            "type": "record", "name": "Point", "namespace": "geo",
            "fields": [{"name": "x", "type": "int"}, {"name": "c", "type": "test.Colour"}]}}},
        {"name": "p", "type": "geo.Point"},
        {"name": "nested", "type": {"type": "map", "values": {
            "type": "array", "items": {"type": "map", "values": "bytes"}}}},
        {"name": "nothing", "type": {"type": "array", "items": "null"}},
        {"name": "last", "type": "string"},
    ],
}
ALL_TYPES_PARSED = fastavro.parse_schema(ALL_TYPES)
ALL_TYPES_DECODE = native.body_decoder(ALL_TYPES)


ALL_TYPES_VALUES = avro_values(ALL_TYPES)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types, all the way down (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def stricter(exc: DecodeError) -> bool:
    """Bad bodies the native decoder refuses where fastavro reads on (or fails later, differently):
    negative lengths, varints beyond 10 bytes, negative enum or union indexes (which fastavro takes
    from the end of the list), an int beyond 32 bits (checked as it is read, not after the body)."""
    text = str(exc)
    return isinstance(exc, BadBody) and any(
        reason in text
        for reason in ("negative ", "bad varint", "(enum index -", "(union branch -", "32-bit range of an Avro int")
    )


def outcome(codec: Codec, data: bytes) -> tuple[str, dict[str, Any]] | DecodeError:
    try:
        return codec.decode(data)
    except DecodeError as exc:
        assert str(exc).strip()
        return exc


def assert_agrees(data: bytes) -> None:
    ours, reference = outcome(NATIVE, data), outcome(REFERENCE, data)
    if isinstance(reference, DecodeError):
        assert isinstance(ours, DecodeError), f"fastavro refused ({reference}) what the native decoder read: {ours}"
        assert type(ours) is type(reference) or stricter(ours), f"{ours!r} where fastavro raised {reference!r}"
    elif isinstance(ours, DecodeError):
        assert stricter(ours), f"native decoder refused a body fastavro reads as {reference}: {ours!r}"
    else:
        assert same(ours, reference)


# --------------------------------------------------------------------------- valid bodies


def test_the_codec_decodes_every_current_version_natively() -> None:
    for name in NATIVE.records:
        assert NATIVE._readers[NATIVE.fingerprint(name)][5] is not None, name
        assert REFERENCE._readers[REFERENCE.fingerprint(name)][5] is None


@st.composite
def records(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(JSON_FORMS)))
    return name, draw(JSON_FORMS[name])


@FUZZ
@given(records())
def test_every_shipped_record_decodes_as_fastavro_reads_it(named_record: tuple[str, dict[str, Any]]) -> None:
    name, record = named_record
    data = NATIVE.encode(name, record)
    decoded = NATIVE.decode(data)
    assert same(decoded, REFERENCE.decode(data))
    assert NATIVE.decode(bytearray(data), name) == decoded[1] == NATIVE.decode(memoryview(data), name)


@FUZZ
@given(ALL_TYPES_VALUES)
def test_every_supported_type_decodes_as_fastavro_reads_it(record: dict[str, Any]) -> None:
    assert ALL_TYPES_DECODE is not None
    out = BytesIO()
    fastavro.schemaless_writer(out, ALL_TYPES_PARSED, record)
    body = out.getvalue()
    expected = fastavro.schemaless_reader(BytesIO(body), ALL_TYPES_PARSED, None)
    assert same(ALL_TYPES_DECODE(body, 0), expected)
    assert same(ALL_TYPES_DECODE(b"\xc3\x01" + body, 2), expected)
    for cut in range(len(body)):  # the last field takes a byte at least: every cut ends early
        with pytest.raises(native.Malformed) as info:
            ALL_TYPES_DECODE(body[:cut], 0)
        assert info.value.args[0] == native.TRUNCATED and "ends early" in info.value.args[1]


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_under_a_schema_of_every_type_give_a_record_or_malformed(body: bytes) -> None:
    # no comparison with fastavro here: it would build an array of 2**40 nulls if the bytes said so
    assert ALL_TYPES_DECODE is not None
    try:
        assert isinstance(ALL_TYPES_DECODE(body, 0), dict)
    except native.Malformed as exc:
        kind, detail, offset = exc.args
        assert kind in (0, native.TRUNCATED, native.TRAILING) and detail and 0 <= offset <= len(body)


def test_enum_symbols_and_field_names_are_shared_objects() -> None:
    record = {"request_id": "r", "impression_id": "i", "label_type": "c", "event_time_ms": 5, "value": 1.0,
              "reason": "duplicate"}
    one, two = (NATIVE.decode(NATIVE.encode("UnmatchedLabel", record), "UnmatchedLabel") for _ in range(2))
    assert one == two == record and one["reason"] is two["reason"]
    assert all(a is b for a, b in zip(one, two, strict=True))


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "record", "name": "F", "fields": [{"name": "f", "type": {"type": "fixed", "name": "X", "size": 4}}]},
        {"type": "record", "name": "T",
         "fields": [{"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}]},
        {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]},
    ],
)
def test_a_schema_with_an_unsupported_type_keeps_fastavro(schema: dict[str, Any]) -> None:
    with pytest.raises(native.Unsupported):
        native.program(schema)
    assert native.body_decoder(schema) is None


# --------------------------------------------------------------------------- bad bodies

HEADER = b"\xc3\x01" + NATIVE.fingerprint("Impression")
IMPRESSION_HEAD = b"\x02r\x02i\x02u\x02v\x02"  # four strings, event_time_ms 1


@pytest.mark.parametrize(
    ("body", "error", "says"),
    [
        (zigzag(-3) + b"abc", BadBody, "field 'request_id': negative string length -3 at offset 10"),
        (b"\xff" * 10 + b"\x01", BadBody, "field 'request_id': bad varint: longer than the 10 bytes of a long"),
        (b"\xff\xff", TruncatedMessage, "the body ends early (inside a varint that starts at offset 10)"),
        (zigzag(2**62), TruncatedMessage, "a string of 4611686018427387904 bytes at offset 20, 0 left"),
        (b"\x04\xff\xfe", BadBody, "field 'request_id': UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff"),
        (b"\x06\xed\xa0\x80", BadBody, "UnicodeDecodeError"),  # a UTF-16 surrogate: not UTF-8
        (IMPRESSION_HEAD + zigzag(2**31) + b"\x00", BadBody, "field 'position' holds 2147483648, outside the 32-bit"),
        (IMPRESSION_HEAD + b"\x00" + zigzag(-(2**63)), BadBody, "field 'context': bad block count"),
        (IMPRESSION_HEAD + b"\x00" + zigzag(-1) + zigzag(4) + b"\x02k\x02v\x00", None, "context"),  # sized block
        (IMPRESSION_HEAD + b"\x00\x00\x00", BadBody, "1 trailing bytes after its body"),
    ],
)
def test_bad_bodies_say_what_and_where(body: bytes, error: type[DecodeError] | None, says: str) -> None:
    if error is None:
        assert NATIVE.decode(HEADER + body)[1][says] == {"k": "v"}
        return
    with pytest.raises(error) as info:
        NATIVE.decode(HEADER + body)
    assert says in str(info.value) and "Impression (current)" in str(info.value)


def test_bad_enum_and_union_indexes() -> None:
    label = {"request_id": "r", "impression_id": "i", "label_type": "c", "event_time_ms": 5, "value": 1.0,
             "reason": "duplicate"}
    data = NATIVE.encode("UnmatchedLabel", label)
    for index, shown in ((3, "enum index 3 of 3"), (-1, "enum index -1 of 3")):  # fastavro reads -1 as the last
        with pytest.raises(BadBody, match=rf"field 'reason': an enum symbol or union branch index .*\({shown}"):
            NATIVE.decode(data[:-1] + zigzag(index))
    sample = Codec.default().schema("Sample")
    decode = native.body_decoder({**sample, "fields": [f for f in sample["fields"] if f["name"] == "delay_ms"]})
    assert decode is not None and decode(b"\x00", 0) == {"delay_ms": None} and decode(b"\x02\x06", 0) == {"delay_ms": 3}
    with pytest.raises(native.Malformed, match=r"field 'delay_ms': .*\(union branch -1 of 2"):
        decode(zigzag(-1) + b"\x06", 0)


def test_an_array_of_values_that_take_no_bytes_is_capped() -> None:
    nulls = {"type": "array", "items": "null"}
    decode = native.body_decoder({"type": "record", "name": "R", "fields": [{"name": "a", "type": nulls}]})
    assert decode is not None
    assert decode(zigzag(native._avro.MAX_EMPTY_ITEMS) + b"\x00", 0) == {"a": [None] * native._avro.MAX_EMPTY_ITEMS}
    with pytest.raises(native.Malformed, match="more than 1048576 values that take no bytes"):
        decode(zigzag(2**40) + b"\x00", 0)  # fastavro would build a list of 2**40 Nones


@FUZZ
@given(st.sampled_from(sorted(NATIVE.known_fingerprints())), st.binary(max_size=200))
def test_random_bodies_fail_as_fastavro_fails(fp: bytes, body: bytes) -> None:
    assert_agrees(b"\xc3\x01" + fp + body)


@FUZZ
@given(records(), st.integers(0, 10_000), st.binary(min_size=1, max_size=12),
       MUTATIONS)
def test_mutated_records_fail_as_fastavro_fails(
    named_record: tuple[str, dict[str, Any]], at: int, noise: bytes, how: str
) -> None:
    data = NATIVE.encode(*named_record)
    assert_agrees(mutate(data, HEADER_SIZE + at % (len(data) - HEADER_SIZE), noise, how))


UNBUILT = """
from schemas import Codec, native
codec = Codec.default()
record = {"request_id": "r1", "event_time_ms": 5, "sparse": {"city": "c1"}, "dense": {"ctr": 0.5}}
print(native.AVAILABLE, codec.decode(codec.encode("FeatureSnapshot", record), "FeatureSnapshot") == record)
"""


def test_without_the_extension_decoding_falls_back_to_fastavro_and_says_so_once() -> None:
    done = run_without_extension(UNBUILT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
    assert done.stderr.count("the native Avro decoder (schemas/_avro.c) is not built here") == 1, done.stderr


@FUZZ
@given(records())
def test_fields_decoder_gives_the_values_in_schema_order(named_record: tuple[str, dict[str, Any]]) -> None:
    name, record = named_record
    data = NATIVE.encode(name, record)
    read = native.fields_decoder(NATIVE.schema(name), HEADER_SIZE)
    assert read is not None
    expected = REFERENCE.decode(data, name)
    assert same((name, dict(zip(expected, read(data), strict=True))), (name, expected))
    assert list(expected) == [f["name"] for f in NATIVE.schema(name)["fields"]]


def test_fields_decoder_of_a_one_field_record_gives_a_tuple() -> None:
    schema = {"type": "record", "name": "One", "fields": [{"name": "n", "type": "long"}]}
    read = native.fields_decoder(schema, 0)
    assert read is not None and read(b"\x54") == (42,)
