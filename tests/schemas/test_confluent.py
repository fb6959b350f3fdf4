"""The Confluent Schema Registry framing (schemas/confluent.py) and its per-deployment option
(common/wire.py).

No Confluent Schema Registry server can be had here (none is packaged on PyPI or Debian, and it needs
the network to fetch), so these tests run against confluent-kafka's own in-process registry, the
``mock://`` URLs of its ``SchemaRegistryClient`` (``MockSchemaRegistryClient``): the real client class
and the real serializers, with an in-memory store. Where the mock does not implement an endpoint the
project uses (a subject's compatibility level: the mock stores none), a subclass of it keeps the
level as a registry does. An unreachable registry is the real client against a closed port.
"""

from __future__ import annotations

import json
import uuid
from io import BytesIO
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from common.errors import ConfigError
from common.wire import REGISTRY_AUTH_ENV, WireFormatConfig
from devstack.processes import free_port
from schemas import RECORDS, BadMagic, Codec, TruncatedMessage, WrongRecord
from schemas import confluent as confluent_module
from schemas.compat import load_compat_config
from schemas.confluent import HEADER_SIZE, MAGIC, ConfluentCodec, RegistryError, SchemaIdError, subject
from schemas.json_forms import to_avro
from tests.schemas.schema_strategies import JSON_FORMS

CODEC = Codec.default()
TOPIC_OF = {
    "Impression": "events.impressions",
    "FeatureSnapshot": "events.feature_snapshots",
    "Label": "events.labels",
    "Sample": "samples.click",
    "UnmatchedLabel": "samples.unmatched",
}
LABEL = to_avro("Label", {"request_id": "r1", "impression_id": "i1", "label_type": "click", "event_time_ms": 7})


def fresh() -> ConfluentCodec:
    """The framing over a registry of its own (a new mock:// name: nothing registered yet)."""
    return ConfluentCodec.connect(f"mock://{uuid.uuid4().hex}")


class LevelKeepingRegistry(MockSchemaRegistryClient):
    """confluent-kafka's mock, keeping each subject's compatibility level as a registry does (the mock
    answers None and keeps nothing): GET of a subject without a level is a 404; ``refuse`` makes PUT 403."""

    def __init__(self, levels: dict[str, str] | None = None, refuse: bool = False) -> None:
        super().__init__({"url": "mock://levels"})
        self.levels = dict(levels or {})
        self.refuse = refuse
        self.puts: list[tuple[str, str]] = []

    def get_config(self, subject_name: str | None = None) -> Any:
        from confluent_kafka.schema_registry import ServerConfig

        if subject_name not in self.levels:
            raise SchemaRegistryError(404, 40408, f"Subject '{subject_name}' does not have subject-level compatibility")
        return ServerConfig(compatibility_level=self.levels[subject_name])

    def set_config(self, subject_name: str | None = None, config: Any = None) -> Any:
        if self.refuse:
            raise SchemaRegistryError(403, 40301, "User is denied operation Write on Subject")
        level = str(config.compatibility)
        self.puts.append((str(subject_name), level))
        self.levels[str(subject_name)] = level
        return config


# -- both framings, every record --------------------------------------------------------------------

ROUND_TRIP = fresh()


@pytest.mark.parametrize("record", RECORDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_record_round_trips_and_reads_as_its_single_object_twin(record: str, data: st.DataObject) -> None:
    value = to_avro(record, data.draw(JSON_FORMS[record]))
    framing = ROUND_TRIP
    message = framing.encode(TOPIC_OF[record], record, value)
    single = CODEC.encode(record, value)
    schema_id = framing.register(TOPIC_OF[record], record)
    assert message[:HEADER_SIZE] == MAGIC + schema_id.to_bytes(4, "big")
    assert message[HEADER_SIZE:] == single[10:]  # the same Avro body
    assert framing.decode(message) == (record, value) == CODEC.decode(single)
    assert framing.decode(message, record) == value
    assert framing.decode(single, record) == value  # a reader of this framing reads single-object too


def test_the_framing_is_confluents_own_serializers() -> None:
    """Bytes of confluent-kafka's AvroSerializer decode here; bytes written here, by its AvroDeserializer."""
    framing = fresh()
    context = SerializationContext(TOPIC_OF["Label"], MessageField.VALUE)
    serialize = AvroSerializer(framing.client, json.dumps(CODEC.schema("Label")))
    theirs = serialize(LABEL, context)
    assert theirs is not None and theirs[:1] == MAGIC
    assert framing.decode(theirs, "Label") == LABEL
    ours = framing.encode(TOPIC_OF["Label"], "Label", LABEL)
    assert AvroDeserializer(framing.client)(ours, context) == LABEL


def test_a_topic_of_both_framings_decodes_to_the_same_records() -> None:
    framing = fresh()
    events = [LABEL, {**LABEL, "request_id": "r2"}, {**LABEL, "request_id": "r3", "value": 0.5}]
    topic = TOPIC_OF["Label"]
    mixed = [framing.encode(topic, "Label", e) if i % 2 else CODEC.encode("Label", e) for i, e in enumerate(events)]
    assert {m[:1] for m in mixed} == {MAGIC, b"\xc3"}
    assert [framing.decode(m, "Label") for m in mixed] == events


def test_each_subject_gets_its_id_and_headers_follow_the_topic() -> None:
    """TopicNameStrategy: the schema is registered under <topic>-value; a registry may give two subjects
    of one schema two ids (the mock does), so the header is per topic."""
    framing = fresh()
    click, purchase = framing.header("samples.click", "Sample"), framing.header("samples.purchase", "Sample")
    assert framing.client.get_subjects() == [subject("samples.click"), subject("samples.purchase")]
    registered = framing.client.get_latest_version("samples.click-value")
    assert json.loads(registered.schema.schema_str) == CODEC.schema("Sample")
    assert click != purchase and framing.header("samples.click", "Sample") == click  # asked once, kept


# -- what a reader refuses, with the reason --------------------------------------------------------


def test_an_unknown_id_is_refused_naming_it_and_asked_again_only_later(monkeypatch: pytest.MonkeyPatch) -> None:
    framing = fresh()
    message = MAGIC + (1).to_bytes(4, "big") + CODEC.encode("Label", LABEL)[10:]
    with pytest.raises(SchemaIdError, match=r"has no schema id 1 \(.*404"):
        framing.decode(message)
    framing.register(TOPIC_OF["Label"], "Label")  # now id 1 exists
    with pytest.raises(SchemaIdError, match="has no schema id 1"):  # the failure is kept a while
        framing.decode(message)
    monkeypatch.setattr(confluent_module, "RETRY_FAILED_S", 0.0)
    framing._failed.clear()
    assert framing.decode(message, "Label") == LABEL


def test_an_unreachable_registry_is_a_decode_error_and_fails_the_start_check() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    framing = ConfluentCodec(CODEC, SchemaRegistryClient({"url": url, "max.retries": 0}), url)
    message = MAGIC + (3).to_bytes(4, "big") + b"\x02x"
    with pytest.raises(SchemaIdError, match=rf"registry at {url} did not give schema id 3: "):
        framing.decode(message)
    with pytest.raises(RegistryError, match=rf"^the schema registry at {url} does not answer: \S"):
        framing.check()
    with pytest.raises(RegistryError, match=rf"registry at {url} did not give the compatibility level|does not answer"):
        framing.register("samples.click", "Sample")


def test_schemas_that_are_not_the_projects_records_are_refused() -> None:
    framing = fresh()
    client = framing.client
    other = client.register_schema("x-value", Schema(json.dumps({"type": "record", "name": "Other", "fields": []})))
    proto = client.register_schema("p-value", Schema('syntax = "proto3"; message M {}', "PROTOBUF"))
    plain = client.register_schema("s-value", Schema('"string"'))
    for schema_id, reason in ((other, "is the record Other, not one of the records FeatureSnapshot, Impression"),
                              (proto, "is a PROTOBUF schema"), (plain, 'is the Avro type "string", not one of')):
        with pytest.raises(SchemaIdError, match=rf"schema id {schema_id} at mock://\S+ {reason}"):
            framing.decode(MAGIC + schema_id.to_bytes(4, "big") + b"\x00")


def test_wrong_magic_truncation_and_wrong_record() -> None:
    framing = fresh()
    with pytest.raises(BadMagic, match=r"neither the Confluent magic byte 00 nor the single-object marker c3 01: "
                                       r"got \[7b 22\] \(2 bytes\)"):
        framing.decode(b'{"')
    with pytest.raises(TruncatedMessage, match="shorter than the 5-byte Confluent header"):
        framing.decode(b"\x00\x00\x01")
    message = framing.encode(TOPIC_OF["Label"], "Label", LABEL)
    with pytest.raises(TruncatedMessage, match="Label"):
        framing.decode(message[:-3])
    with pytest.raises(WrongRecord, match=r"expected a Sample message, got Label \(current, schema id \d+"):
        framing.decode(message, "Sample")
    # A single-object reader told what it was given.
    with pytest.raises(BadMagic, match="Confluent framing's magic byte 00: read it with wire format confluent"):
        CODEC.decode(message)


def test_a_writer_version_kept_only_in_the_registry_is_resolved_to_the_current_schema() -> None:
    """Another producer's newer Label (one more field, with a default): read as Avro resolves it."""
    framing = fresh()
    newer = json.loads(json.dumps(CODEC.schema("Label")))
    newer["fields"].append({"name": "campaign", "type": "string", "default": "", "doc": "a later field"})
    schema_id = framing.client.register_schema("events.labels-value", Schema(json.dumps(newer)))
    out = BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(newer), {**LABEL, "campaign": "spring"})
    message = MAGIC + schema_id.to_bytes(4, "big") + out.getvalue()
    assert framing.decode(message, "Label") == LABEL
    with pytest.raises(TruncatedMessage, match=rf"Label \(registry id {schema_id}\)"):
        framing.decode(message[:-2])


# -- the compatibility level, from the gate --------------------------------------------------------


def test_registering_sets_the_subjects_level_to_the_gates() -> None:
    gate = load_compat_config(CODEC.schema_set.root)
    client = LevelKeepingRegistry({subject("samples.unmatched"): "BACKWARD"})
    framing = ConfluentCodec(CODEC, client, "mock://levels")
    for record in ("Sample", "UnmatchedLabel"):
        framing.register(TOPIC_OF[record], record)
    assert client.levels == {subject(TOPIC_OF[r]): gate.level(r) for r in ("Sample", "UnmatchedLabel")}
    assert set(client.levels.values()) == {"FULL_TRANSITIVE"}  # what schemas/compat.yaml enforces today
    # A subject already at the gate's level is not set again.
    again = ConfluentCodec(CODEC, client, "mock://levels")
    puts = len(client.puts)
    again.register(TOPIC_OF["Sample"], "Sample")
    assert len(client.puts) == puts


def test_a_registry_that_refuses_the_level_stops_the_writer_in_one_line() -> None:
    framing = ConfluentCodec(CODEC, LevelKeepingRegistry(refuse=True), "mock://levels")
    with pytest.raises(RegistryError) as caught:
        framing.register("samples.click", "Sample")
    message = str(caught.value)
    assert "\n" not in message
    assert "did not set the compatibility of samples.click-value to FULL_TRANSITIVE" in message
    assert "schemas/compat.yaml" in message and "403" in message


# -- the option ---------------------------------------------------------------------------------------


def test_the_option_is_one_model_in_both_deployables() -> None:
    from jobs.config import KafkaConfig as JoinKafka
    from trainer.config import KafkaConfig as TrainerKafka

    for model in (JoinKafka, TrainerKafka):
        assert model.model_fields["wire"].annotation is WireFormatConfig
        assert model().wire == WireFormatConfig(format="single_object")


def test_the_options_rules() -> None:
    with pytest.raises(ValidationError, match="format confluent needs schema_registry_url"):
        WireFormatConfig(format="confluent")
    with pytest.raises(ValidationError, match="are set but format is single_object"):
        WireFormatConfig(schema_registry_url="http://r:8081")
    with pytest.raises(ValidationError, match=r"must be http\(s\)://host:port .*got 'r:8081'"):
        WireFormatConfig(format="confluent", schema_registry_url="http://a:1,r:8081")
    with pytest.raises(ValidationError, match="must be user:password"):
        WireFormatConfig(format="confluent", schema_registry_url="http://r:8081", schema_registry_auth="user")
    moved = WireFormatConfig.model_validate({"format": "confluent", "schema_registry_url": "https://u%40x:p%3Aw@r:8081"})
    assert moved.schema_registry_url == "https://r:8081"
    assert moved.schema_registry_auth is not None and moved.schema_registry_auth.get_secret_value() == "u@x:p:w"
    assert "p:w" not in repr(moved) and "p:w" not in moved.model_dump_json()


def test_the_tools_flags_take_the_auth_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REGISTRY_AUTH_ENV, "user:secret")
    wire = WireFormatConfig.from_flags("confluent", "http://r:8081")
    assert wire.schema_registry_auth is not None and wire.schema_registry_auth.get_secret_value() == "user:secret"
    assert WireFormatConfig.from_flags(None, None) == WireFormatConfig()  # single_object ignores it
    with pytest.raises(ConfigError, match=r"^--wire-format / --schema-registry-url: format confluent needs"):
        WireFormatConfig.from_flags("confluent", None)


def test_the_default_is_the_codec_itself_and_confluent_shares_the_process_client() -> None:
    assert WireFormatConfig().codec() is CODEC
    url = f"mock://{uuid.uuid4().hex}"
    one = WireFormatConfig(format="confluent", schema_registry_url=url).codec()
    two = WireFormatConfig(format="confluent", schema_registry_url=url).codec()
    assert isinstance(one, ConfluentCodec) and isinstance(two, ConfluentCodec)
    assert one.client is two.client  # one writer's registrations are seen by the other's reads
    message = one.encode("samples.click", "Label", LABEL)
    assert two.decode(message, "Label") == LABEL
