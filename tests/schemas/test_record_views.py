"""Every view of a record carries the fields of its schema (schemas.records, from the .avsc), no more.

The record is defined once, by its .avsc; the typed form (the pydantic model of schemas.models) and
the views the deployables keep for speed are checked against it: the join core's slotted Sample (its
hot path), the trainer's Sample and its columnar table (fields it does not read are named as left
out), and the benchmarks' record generators. Adding a field to an .avsc, or dropping one, makes each
of them fail here (the last tests change the schema's field list to show it). The Flink job has no
row type of its own for a record: it carries the join core's Sample and writes it through the same
serde as the embedded runtime (schemas.serde).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jobs.core.events import Impression, Label
from jobs.core.join import SampleJoin
from jobs.core.local import LocalJoinRunner
from jobs.core.outputs import Sample as CoreSample
from schemas import RECORDS, Codec, records
from schemas.bench.codec import make_records
from schemas.errors import SchemaDefinitionError
from schemas.models import MODELS
from schemas.serde import Serde
from trainer import samples as trainer_samples
from trainer.bench.sidecar import synthetic_samples

T0 = 1_700_000_000_000


def trainer_table_fields() -> tuple[str, ...]:
    """The Sample fields the trainer's columnar table is built from, read off a real table."""
    record = make_records("Sample", 1)[0]
    table = trainer_samples.SampleTable([trainer_samples.decode_sample(Codec.default().encode("Sample", record))])
    assert len(table.labels) == len(table.attributions) == 1
    groups = {name.partition(".")[0] for name in (*table.categorical_fields(), *table.dense_fields()) if "." in name}
    plain = [name for name in table.categorical_fields() if "." not in name]
    return ("label", "attribution", *table.times, *plain, *sorted(groups))


# (form, record, its field names, the fields it names as left out; None: every field, in schema order)
View = tuple[str, str, Callable[[], tuple[str, ...]], tuple[str, ...] | None]
VIEWS: list[View] = [
    *[(f"schemas.models.{name}", name, lambda m=MODELS[name]: tuple(m.model_fields), None) for name in RECORDS],
    ("jobs.core.outputs.Sample", "Sample", lambda: tuple(CoreSample.__dataclass_fields__), None),
    ("trainer.samples.Sample", "Sample", lambda: trainer_samples.VIEW_FIELDS, trainer_samples.LEFT_OUT),
    ("trainer.samples.SampleTable", "Sample", trainer_table_fields, (*trainer_samples.LEFT_OUT,
                                                                    *trainer_samples.ID_FIELDS)),
    *[(f"schemas.bench.codec {name}", name, lambda n=name: tuple(make_records(n, 1)[0]), None) for name in RECORDS],
    ("trainer.bench.sidecar samples", "Sample", lambda: tuple(synthetic_samples(1)[0]), None),
]


def disagreements() -> list[str]:
    """The views that disagree with the schemas' current field lists, with the reason."""
    out = []
    for form, record, names, left_out in VIEWS:
        try:
            if left_out is None:
                records.check_fields(record, names(), form)
            else:
                records.check_view(record, names(), form, leaves_out=left_out)
        except SchemaDefinitionError as exc:
            out.append(str(exc))
    return out


def test_every_view_carries_exactly_its_schemas_fields() -> None:
    assert disagreements() == []


@pytest.mark.parametrize("change", ["added", "dropped"])
def test_a_field_added_to_or_dropped_from_the_schema_fails_every_view(
    monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    for record in RECORDS:
        fields = records.FIELDS[record]
        monkeypatch.setitem(
            records.FIELDS, record, (*fields, "country") if change == "added" else fields[:-1]
        )
    failed = disagreements()
    assert len(failed) == len(VIEWS), "\n".join(failed)
    missing = "missing ['country']" if change == "added" else "unknown ['"
    assert all(missing in reason for reason in failed), failed


def test_a_view_that_names_a_field_twice_or_leaves_out_an_unknown_one_is_refused() -> None:
    with pytest.raises(SchemaDefinitionError, match=r"named twice \['label'\]"):
        records.check_view("Sample", ("label",), "a view", leaves_out=("label", *records.SAMPLE_FIELDS[1:]))
    with pytest.raises(SchemaDefinitionError, match=r"unknown \['country'\]"):
        records.check_view("Sample", records.SAMPLE_FIELDS, "a view", leaves_out=("country",))


# The Python annotation each Avro type of a flat record is held in by the join core's value types.
def _annotation(avro: Any) -> str:
    if isinstance(avro, list):
        (inner,) = [t for t in avro if t != "null"]
        return f"{_annotation(inner)} | None"
    if isinstance(avro, dict):
        if avro["type"] == "map":
            return f"dict[str, {_annotation(avro['values'])}]"
        if avro["type"] == "enum":
            return "str"
        return _annotation(avro["type"])
    return {"string": "str", "int": "int", "long": "int", "boolean": "bool", "double": "float"}[avro]


def test_the_join_cores_sample_holds_each_field_in_the_python_type_of_its_avro_type() -> None:
    annotations = dict(CoreSample.__annotations__)  # as written (postponed: strings)
    expected = {f["name"]: _annotation(f["type"]) for f in records.SCHEMAS["Sample"]["fields"]}
    assert annotations == expected


def test_the_join_fills_every_field_of_every_kind_of_sample_and_one_encoder_writes_it() -> None:
    """The join builds its samples field by field (its hot path): every slot of a POSITIVE, a
    NEGATIVE and a LATE_POSITIVE sample is set, and the serde's object encoder writes the same bytes
    as the codec writes for its dict form."""
    runner = LocalJoinRunner(SampleJoin())
    for event in (
        Impression("r1", "i1", "u1", "v1", T0, 3, {"page": "feed"}),
        Label("r1", "i1", "click", T0 + 1_000, 1.0),
        Impression("r2", "i2", "u2", "v2", T0 + 5, 0, {}),
        Label("r2", "i2", "click", T0 + 900_000, 1.0),
    ):
        runner.process(event)
    runner.finish()
    assert {s.attribution for s in runner.samples} == set(records.ATTRIBUTIONS)
    serde = Serde()
    encode = serde.object_encoder("Sample")
    for sample in runner.samples:
        values = {name: getattr(sample, name) for name in records.SAMPLE_FIELDS}  # AttributeError if unset
        assert encode(sample) == serde.codec.encode("Sample", values, validate=True)
        assert serde.decode_valid(encode(sample), "Sample") == values
