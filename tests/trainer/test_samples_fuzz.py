"""Fuzzing the trainer's sample readers (Kafka values and JSONL files): a bad record is a BadRecord with
a reason, or a skipped line counted as bad; never a crash, and the good records around it are kept."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synth import make_samples, write_jsonl

from schemas import Codec
from trainer.samples import BadRecord, decode_sample, read_samples

CODEC = Codec.default()
GOOD, _ = make_samples(20, seed=11)
GOOD_BYTES = CODEC.encode("Sample", GOOD[0])

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
FIELDS = sorted(GOOD[0])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_with_a_reason(data: bytes) -> None:
    try:
        decode_sample(data, CODEC)
    except BadRecord as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(GOOD_BYTES) - 1), st.integers(min_value=0, max_value=255))
def test_truncated_or_flipped_values_are_refused_or_decode_to_a_valid_sample(cut: int, byte: int) -> None:
    for data in (GOOD_BYTES[:cut], GOOD_BYTES[:cut] + bytes([byte]) + GOOD_BYTES[cut + 1 :]):
        try:
            sample = decode_sample(data, CODEC)
        except BadRecord as exc:
            assert str(exc)
        else:
            assert sample.label in (0, 1)


def test_null_value_wrong_magic_and_unknown_fingerprint_name_their_problem() -> None:
    for data, words in ((None, "null"), (b"\x00\x01" + GOOD_BYTES[2:], "marker"),
                        (GOOD_BYTES[:2] + b"\xff" * 8 + GOOD_BYTES[10:], "fingerprint")):
        try:
            decode_sample(data, CODEC)
        except BadRecord as exc:
            assert words in str(exc).lower(), exc
        else:
            raise AssertionError(f"{data!r} decoded")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(FIELDS), JSON_VALUES)
def test_a_corrupted_line_is_skipped_and_its_neighbours_kept(tmp_path: Path, field: str, value: object) -> None:
    bad = dict(GOOD[1], **{field: value})
    path = tmp_path / "s.jsonl"
    lines = [json.dumps(GOOD[0]), json.dumps(bad), "\ufeff" + json.dumps(GOOD[2]), "{not json", json.dumps(GOOD[3])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows, stats = read_samples([path], deadletter=tmp_path / "bad.jsonl")
    ids = [r.sample_id for r in rows]
    assert GOOD[0]["sample_id"] in ids and GOOD[3]["sample_id"] in ids
    assert stats.bad >= 1  # at least the line that is not JSON
    dead = [json.loads(line) for line in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert len(dead) == stats.bad and all(d.get("reason") for d in dead)


def test_invalid_utf8_and_huge_fields_do_not_stop_the_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", GOOD[:3])
    with path.open("ab") as fh:
        fh.write(b'{"sample_id": "\xff\xfe"}\n')
        fh.write(json.dumps(dict(GOOD[4], user_id="u" * 1_000_000, dense={"x": 1e308})).encode() + b"\n")
        fh.write(json.dumps(GOOD[5]).encode() + b"\n")
    rows, stats = read_samples([path])
    assert {r.sample_id for r in rows} >= {GOOD[i]["sample_id"] for i in (0, 1, 2, 5)}
    assert stats.bad >= 1


def test_regression_unhashable_attribution_is_a_bad_record_not_a_crash(tmp_path: Path) -> None:
    # found by the fuzzer: {"attribution": []} raised TypeError (unhashable) out of the reader
    path = write_jsonl(tmp_path / "s.jsonl", [GOOD[0], dict(GOOD[1], attribution=[]), GOOD[2]])
    rows, stats = read_samples([path])
    assert [r.sample_id for r in rows] == [GOOD[0]["sample_id"], GOOD[2]["sample_id"]] and stats.bad == 1
