"""The one serializer/deserializer (schemas/serde.py) in both framings: what the join writes with, what
the trainer reads with.

The Confluent framing runs against confluent-kafka's in-process mock registry (``mock://`` urls), as
in test_confluent.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from schemas import Codec, DecodeError, InvalidRecord, WrongRecord
from schemas.bench.codec import make_records
from schemas.confluent import ConfluentCodec
from schemas.errors import EncodeError
from schemas.json_forms import to_avro
from schemas.serde import EMPTY_MESSAGE, Serde, decode_valid

CODEC = Codec.default()
SAMPLES = make_records("Sample", 30)
LABEL = to_avro("Label", {"request_id": "r1", "impression_id": "i1", "label_type": "click", "event_time_ms": 7})


def confluent() -> Serde:
    return Serde(ConfluentCodec.connect(f"mock://{uuid.uuid4().hex}"))


def as_object(record: dict[str, Any]) -> Any:
    return SimpleNamespace(**record)


def test_the_object_encoder_writes_the_bytes_of_the_dict_encoder_in_each_framing() -> None:
    single, registry = Serde(), confluent()
    assert not single.per_topic and registry.per_topic
    for serde, topic in ((single, None), (registry, "samples.click"), (registry, "samples.conv")):
        encode, encode_dict = serde.object_encoder("Sample", topic), serde.encoder("Sample", topic)
        for record in SAMPLES:
            data = encode(as_object(record))
            assert data == encode_dict(record)
            assert serde.decode(data) == ("Sample", record)
            assert serde.decode_valid(data, "Sample") == record
    assert single.header("Sample") == b"\xc3\x01" + CODEC.fingerprint("Sample")
    # one registry id per subject: each topic's messages carry their own
    assert registry.header("Sample", "samples.click")[:1] == registry.header("Sample", "samples.conv")[:1] == b"\x00"


def test_the_confluent_framing_needs_the_topic_it_writes_to() -> None:
    with pytest.raises(EncodeError, match=r"^the Confluent framing writes Sample per topic .*: no topic given$"):
        confluent().object_encoder("Sample")


def test_decode_valid_gives_the_reason_a_dead_letter_carries() -> None:
    record = SAMPLES[0]
    with pytest.raises(DecodeError) as empty:
        decode_valid(None, "Sample")
    assert str(empty.value) == EMPTY_MESSAGE == "empty message (null value)"
    with pytest.raises(WrongRecord, match=r"^expected a Sample message, got Label"):
        decode_valid(CODEC.encode("Label", LABEL), "Sample")
    with pytest.raises(InvalidRecord, match=r"^invalid Sample: position: Input should be greater than or equal to 0"):
        decode_valid(CODEC.encode("Sample", {**record, "position": -1}), "Sample")
    negative = next(r for r in SAMPLES if r["attribution"] == "NEGATIVE")
    inconsistent = r"^invalid Sample: record: Value error, label must be 0 on NEGATIVE, got 1$"
    with pytest.raises(InvalidRecord, match=inconsistent):
        decode_valid(CODEC.encode("Sample", {**negative, "label": 1}), "Sample")
    # a single-object message read by a Confluent reader: the same record, the same rules
    assert confluent().decode_valid(CODEC.encode("Sample", record), "Sample") == record


class Built:
    """What a reader's builder and fallback were handed."""

    def __init__(self) -> None:
        self.fast: list[tuple[Any, ...]] = []
        self.general: list[tuple[str, dict[str, Any]]] = []

    def builders(self, refuse: Callable[..., bool] = lambda *fields: False) -> dict[str, Callable[..., Any]]:
        def build(*fields: Any) -> Any:
            if refuse(*fields):
                return None  # a value rule that fails: the general path gives the reason
            self.fast.append(fields)
            return ("fast", fields)

        return {"Label": build}

    def fallback(self, name: str, record: dict[str, Any]) -> Any:
        self.general.append((name, record))
        return ("general", name)


def test_a_reader_reads_the_current_schema_natively_and_the_rest_through_its_fallback() -> None:
    seen = Built()
    reader = Serde().reader(seen.builders(refuse=lambda *f: f[2] == "refused"), seen.fallback, empty=LookupError)
    read = reader.read
    assert list(reader.native) == [b"\xc3\x01" + CODEC.fingerprint("Label")]
    with pytest.raises(LookupError, match=r"^empty message"):
        read(None)
    fields = tuple(LABEL.values())
    assert read(CODEC.encode("Label", LABEL)) == ("fast", fields)
    assert read(CODEC.encode("Label", {**LABEL, "label_type": "refused"}))[0] == "general"
    assert read(CODEC.encode("Impression", make_records("Impression", 1)[0])) == ("general", "Impression")
    with pytest.raises(DecodeError):
        read(b"\xc3\x01junk")
    assert [name for name, _ in seen.general] == ["Label", "Impression"]


def test_a_confluent_reader_learns_a_registry_id_once_it_is_the_current_schema() -> None:
    serde, seen = confluent(), Built()
    reader = serde.reader(seen.builders(), seen.fallback)
    read = reader.read
    data = serde.encoder("Label", "events.labels")(LABEL)
    assert read(data) == ("general", "Label")  # the first message of an id goes through the registry
    assert list(reader.native) == [data[:5]]
    assert read(data) == ("fast", tuple(LABEL.values()))
    assert read(CODEC.encode("Label", LABEL)) == ("general", "Label")  # single-object messages still read


def test_a_reader_hands_an_older_version_to_its_fallback(
    schemas_copy: Path, edit_schema: Callable[[Path, str, Callable[[dict[str, Any]], None]], dict[str, Any]]
) -> None:
    """Messages of a released version that is not the reader's current schema are resolved by the codec."""
    edit_schema(schemas_copy, "label", lambda s: s["fields"].append(
        {"name": "country", "type": ["null", "string"], "default": None, "doc": "test"}))
    seen = Built()
    read = Serde(Codec.from_dir(schemas_copy)).reader(seen.builders(), seen.fallback).read
    assert read(CODEC.encode("Label", LABEL)) == ("general", "Label")
    assert seen.general == [("Label", {**LABEL, "country": None})] and seen.fast == []
