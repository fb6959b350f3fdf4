"""Reading samples: JSONL and Avro containers, dedup, bad records, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import pytest
from synth import make_samples, write_jsonl

from trainer.errors import InputError
from trainer.samples import LATE_POSITIVE, NEGATIVE, POSITIVE, SampleTable, read_samples

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "sample.avsc"


def test_jsonl_and_dedup_by_sample_id(tmp_path: Path) -> None:
    samples, _ = make_samples(200, seed=3)
    path = write_jsonl(tmp_path / "s.jsonl", samples + samples[:10])  # a replay's repeats
    rows, stats = read_samples([path])
    assert len(rows) == len(samples) and stats.duplicates == 10
    more = write_jsonl(tmp_path / "more.jsonl", samples[:5])
    rows, stats = read_samples([path, more])
    assert len(rows) == len(samples) and stats.duplicates == 15  # across files too


def test_avro_container(tmp_path: Path) -> None:
    samples, _ = make_samples(100, seed=4)
    schema = fastavro.parse_schema(json.loads(SCHEMA.read_text()))
    path = tmp_path / "s.avro"
    with open(path, "wb") as fh:
        fastavro.writer(fh, schema, samples)
    rows, _ = read_samples([path])
    assert len(rows) == len(samples)
    table = SampleTable(rows)
    assert table.column("user_id").tolist() == [s["user_id"] for s in samples]
    assert table.column("context.page").tolist() == [s["context"]["page"] for s in samples]
    expected = {"POSITIVE": POSITIVE, "NEGATIVE": NEGATIVE, "LATE_POSITIVE": LATE_POSITIVE}
    assert table.attributions.tolist() == [expected[s["attribution"]] for s in samples]


def test_bad_records_are_skipped_and_dead_lettered(tmp_path: Path) -> None:
    samples, _ = make_samples(20, seed=5)
    lines = [json.dumps(s) for s in samples]
    lines[3] = "{not json"
    lines[7] = json.dumps({**samples[7], "label": 2})
    lines[9] = json.dumps({k: v for k, v in samples[9].items() if k != "user_id"})
    lines[11] = json.dumps({**samples[11], "dense": {"x": "high"}})
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    dead = tmp_path / "dead.jsonl"
    rows, stats = read_samples([path], deadletter=dead)
    assert len(rows) == len(samples) - 4 and stats.bad == 4
    reasons = [json.loads(line)["reason"] for line in dead.read_text().splitlines()]
    assert len(reasons) == 4
    assert "label" in reasons[1] and "user_id" in reasons[2] and "dense.x" in reasons[3]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "holds no samples"),
        (b"\x00\x01\x02garbage\xff\xfe\n\x89PNG\n", "no usable sample"),
        (b'{"user_id": "u"}\n', "no usable sample"),
        (b"Obj\x01 this is not really avro", "Avro"),
    ],
)
def test_bad_files_are_input_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.data"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_samples([path])


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_samples([tmp_path / "nope.jsonl"])
    with pytest.raises(InputError, match="directory"):
        read_samples([tmp_path])


def test_defaults_for_optional_fields(tmp_path: Path) -> None:
    path = tmp_path / "min.jsonl"
    path.write_text(json.dumps({"user_id": "u", "item_id": 7, "label": True}) + "\n")
    (row,), _ = read_samples([path])
    assert (row.item_id, row.position, row.attribution, row.sample_id) == ("7", 0, POSITIVE, None)
