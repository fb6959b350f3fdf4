"""Fuzzing the decode path: any bytes give a record or a DecodeError naming why, never another
exception and never a hang (bounded: a decoder must consume input to make progress)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Codec
from schemas.errors import BadBody, DecodeError
from tests.jobs.bad_inputs import zigzag
from tests.schemas.schema_strategies import JSON_FORMS, MUTATIONS, mutate

CODEC = Codec.default()
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FINGERPRINTS = sorted(CODEC.known_fingerprints())


def decodes_or_says_why(data: bytes) -> dict[str, Any] | None:
    try:
        return CODEC.decode(data)[1]
    except DecodeError as exc:
        assert str(exc).strip()
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    decodes_or_says_why(data)


@FUZZ
@given(st.sampled_from(FINGERPRINTS), st.binary(max_size=300))
def test_random_bodies_under_every_known_fingerprint(fp: bytes, body: bytes) -> None:
    decodes_or_says_why(b"\xc3\x01" + fp + body)


@st.composite
def encoded(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(sorted(JSON_FORMS)))
    return CODEC.encode(name, draw(JSON_FORMS[name]))


@FUZZ
@given(encoded(), st.integers(0, 10_000), st.binary(min_size=1, max_size=16),
       MUTATIONS)
def test_mutated_valid_messages(data: bytes, at: int, noise: bytes, how: str) -> None:
    decodes_or_says_why(mutate(data, at % len(data), noise, how))


HEADER = b"\xc3\x01" + CODEC.fingerprint("Impression")


@pytest.mark.parametrize(
    "body",
    [
        zigzag(2**62),  # a string length far beyond the message
        zigzag(-1),  # a negative string length
        b"\xff" * 12,  # a varint longer than a long
        b"\x02r\x02i\x02u\x02v\x02\x00" + zigzag(2**62),  # a map block count far beyond the message
        b"\x02r\x02i\x02u\x02v\x02\x00" + zigzag(-(2**62)) + zigzag(2**62),  # negative count + block size
    ],
)
def test_hostile_lengths_end_early_instead_of_allocating(body: bytes) -> None:
    with pytest.raises(DecodeError):
        CODEC.decode(HEADER + body)


def test_a_huge_map_of_empty_entries_is_bounded_by_the_message_size() -> None:
    n = 200_000
    body = b"\x02r\x02i\x02u\x02v\x02\x00" + zigzag(n) + b"\x00\x00" * n + b"\x00"
    name, record = CODEC.decode(HEADER + body)
    assert name == "Impression" and len(record["context"]) == 1  # every entry has the key ""


@pytest.mark.parametrize("position", [2**31, -(2**31) - 1, 2**40])
def test_an_int_field_beyond_32_bits_is_a_bad_body(position: int) -> None:
    # regression: fastavro reads any varint into an Avro int; such a position used to be accepted
    body = b"\x02r\x02i\x02u\x02v\x02" + zigzag(position) + b"\x00"
    with pytest.raises(BadBody, match=r"'position' holds .* 32-bit range"):
        CODEC.decode(HEADER + body)
    assert CODEC.decode(HEADER + b"\x02r\x02i\x02u\x02v\x02" + zigzag(2**31 - 1) + b"\x00")[1]["position"] == 2**31 - 1
