"""The Confluent Schema Registry framing through the deployables: the embedded join on a real broker
(events of both framings in, samples out), the trainer's decode and consume path, the generator's
Kafka sink, ``infra.cat``, and the Flink job's refusal.

The registry is confluent-kafka's in-process mock (``mock://`` URLs of its ``SchemaRegistryClient``):
no Confluent Schema Registry server can be had here (see tests/schemas/test_confluent.py). One client
per URL is shared by everything in the process (schemas.confluent.registry_client), so the writers'
registrations are what the readers look up, as with a real registry.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from common.topics import create_topics
from common.wire import WireFormatConfig
from infra.cat import dump
from infra.cat import main as cat_main
from jobs.core.events import Label
from jobs.core.outputs import Sample, UnmatchedLabel
from jobs.generate import GeneratorConfig, KafkaTarget
from jobs.generate import run as generate
from jobs.runtime.embedded.runtime import EmbeddedRuntime
from jobs.runtime.kafka_io import WireFormat
from jobs.sample_join import main as sample_join_main
from schemas import Codec
from schemas.confluent import MAGIC, ConfluentCodec, SchemaIdError
from schemas.json_forms import to_avro
from tests.jobs.runtime.test_embedded import Stack
from trainer.config import SidecarConfig
from trainer.samples import BadRecord, decode_sample, parse_sample
from trainer.sidecar.consume import SampleSource

pytestmark = pytest.mark.integration
CODEC = Codec.default()
UNKNOWN_ID = 999_999
EVENTS = [
    {"type": "impression", "request_id": "r1", "impression_id": "i1", "user_id": "u", "item_id": "v",
     "event_time_ms": 1_700_000_000_000, "position": 2, "context": {"page": "feed"}},
    {"type": "feature_snapshot", "request_id": "r1", "event_time_ms": 1_700_000_000_000,
     "sparse": {"city": "bj"}, "dense": {"u_ctr_7d": 0.25}},
    {"type": "label", "request_id": "r1", "impression_id": "i1", "label_type": "click",
     "event_time_ms": 1_700_000_030_000},
]


@pytest.fixture
def stack(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Stack:
    return Stack(kafka_bootstrap, redis_url, 3, tmp_path)


def confluent(url: str | None = None) -> WireFormatConfig:
    return WireFormatConfig(format="confluent", schema_registry_url=url or f"mock://{uuid.uuid4().hex}")


def framing(wire: WireFormatConfig) -> ConfluentCodec:
    codec = wire.codec()
    assert isinstance(codec, ConfluentCodec)
    return codec


def unknown_id_message(record: str, value: dict[str, Any]) -> bytes:
    """A Confluent-framed message whose schema id no registry here has."""
    return MAGIC + UNKNOWN_ID.to_bytes(4, "big") + CODEC.encode(record, value)[10:]


# -- the join's wire format ---------------------------------------------------------------------------


def test_the_default_keeps_the_single_object_wire_format_itself(stack: Stack) -> None:
    """No confluent code on the default path: the join's wire format is the single-object codec itself."""
    wire = WireFormat.for_join(stack.config().kafka, stack.config().join.tasks)
    assert wire.serde.framing is wire.codec and not wire.serde.per_topic


def test_events_of_both_framings_decode_to_the_same_events() -> None:
    topics = {"impression": "events.impressions", "feature_snapshot": "events.feature_snapshots",
              "label": "events.labels"}
    wire = WireFormat(framing(confluent()), events=topics)
    single = WireFormat()
    for event in EVENTS:
        message = wire.encode_event_json(event)
        assert message[:1] == MAGIC
        want = single.decode_event(single.encode_event_json(event))
        assert wire.decode_event(message) == want  # through the codec, learning the id
        assert message[:5] in wire._decoders  # from now on the native decoder reads this id
        assert wire.decode_event(message) == want
        assert wire.decode_event(single.encode_event_json(event)) == want
    with pytest.raises(SchemaIdError, match=f"has no schema id {UNKNOWN_ID}"):
        wire.decode_event(unknown_id_message("Label", to_avro("Label", {k: v for k, v in EVENTS[2].items()
                                                                          if k != "type"})))


def test_outputs_are_written_with_their_topics_ids(stack: Stack) -> None:
    stack.tasks.append({"name": "conversion"})
    wire_config = confluent()
    config = stack.config(kafka__wire=wire_config.model_dump())
    wire = WireFormat.for_join(config.kafka, config.join.tasks)
    assert wire.serde.per_topic
    registry = framing(wire_config)
    sample = {
        "sample_id": "i1:click:POSITIVE", "task": "click", "request_id": "r1", "impression_id": "i1",
        "user_id": "u", "item_id": "v", "position": 0, "context": {}, "impression_time_ms": 1, "label": 1,
        "attribution": "POSITIVE", "label_time_ms": 2, "delay_ms": 1, "emit_time_ms": 2, "sparse": {},
        "dense": {}, "has_snapshot": False,
    }
    for task in ("click", "conversion"):
        topic = f"{stack.samples_prefix}{task}"
        message = wire.encode_sample(Sample(**{**sample, "task": task}))
        assert message[:5] == registry.header(topic, "Sample")
        assert registry.decode(message, "Sample") == {**sample, "task": task}
    unmatched = {"request_id": "r", "impression_id": "i", "label_type": "click", "event_time_ms": 3, "value": 1.0,
                 "reason": "duplicate"}
    label = Label(**{k: v for k, v in unmatched.items() if k != "reason"})
    message = wire.encode_unmatched(UnmatchedLabel(label, "duplicate", "click"))
    assert message[:5] == registry.header(stack.unmatched, "UnmatchedLabel")
    assert registry.decode(message, "UnmatchedLabel") == unmatched


# -- the join on a real broker, read by the trainer ---------------------------------------------------


def test_the_embedded_join_in_the_confluent_framing_feeds_the_trainer(stack: Stack) -> None:
    """Events of both framings in one topic (and one with an unknown id) -> the join -> samples in the
    Confluent framing -> the trainer's decode gives the contract's samples; the bad ones are dead letters."""
    wire_config = confluent()
    registry = framing(wire_config)
    cfg = GeneratorConfig(impressions=1500, seed=4, rate=100.0, delay_mean_ms=15_000, window_ms=60_000,
                          horizon_ms=600_000, run_id="cw")
    generate(cfg, out=str(stack.events_file))
    topics = {"impression": stack.impressions, "feature_snapshot": stack.snapshots, "label": stack.labels}
    writer, single = WireFormat(registry, events=topics), WireFormat()
    producer = Producer({"bootstrap.servers": stack.bootstrap, "partitioner": "murmur2_random"})
    framings = set()
    with stack.events_file.open() as fh:
        for n, line in enumerate(fh):
            event = json.loads(line)
            value = (writer if n % 3 else single).encode_event_json(event)  # a third single-object
            framings.add(value[:1])
            producer.produce(topics[event["type"]], value, event["request_id"].encode())
    bad = unknown_id_message("Label", to_avro("Label", {k: v for k, v in EVENTS[2].items() if k != "type"}))
    producer.produce(stack.labels, bad, b"r-bad")
    producer.flush(30)
    assert framings == {MAGIC, b"\xc3"}

    summary = EmbeddedRuntime(stack.config(kafka__wire=wire_config.model_dump())).run()
    assert summary.finished_input and summary.deadletter == 1
    letter = stack.read(stack.deadletter)
    assert [m.value() for m in letter] == [bad]
    assert f"has no schema id {UNKNOWN_ID}" in dict(letter[0].headers())["error"].decode()

    want, _ = stack.contract()
    messages = stack.read(f"{stack.samples_prefix}click")
    assert len(messages) == len(want) > 100
    assert {m.value()[:5] for m in messages} == {registry.header(f"{stack.samples_prefix}click", "Sample")}
    got = {s.sample_id: s for s in (decode_sample(m.value(), registry) for m in messages)}
    assert got == {sample_id: parse_sample(s) for sample_id, s in want.items()}
    unmatched = stack.read(stack.unmatched)
    assert unmatched and all(registry.decode(m.value(), "UnmatchedLabel") for m in unmatched)
    assert {m.value()[:5] for m in unmatched} == {registry.header(stack.unmatched, "UnmatchedLabel")}

    # The trainer's consume path on the same topic: a bad value among them goes to its dead letter.
    producer.produce(f"{stack.samples_prefix}click", unknown_id_message("Sample", want[next(iter(want))]), b"i-bad")
    producer.flush(30)
    sidecar = SidecarConfig.model_validate({
        "task": f"{stack.samples_prefix.removeprefix('samples.')}click",
        "kafka": {"bootstrap_servers": stack.bootstrap, "group_id": f"trainer-{uuid.uuid4().hex[:8]}",
                  "deadletter_topic": f"{stack.deadletter}.trainer", "wire": wire_config.model_dump()},
    })
    assert sidecar.topic == f"{stack.samples_prefix}click"
    create_topics(stack.bootstrap, {sidecar.kafka.deadletter_topic: (1, 0)})
    source = SampleSource(sidecar, dict)
    try:
        source.check(timeout_s=10)  # the topic, and the registry answering
        decoded = source.decode(stack.read(sidecar.topic))
        source.flush(deadline=float("inf"))
    finally:
        source.close()
    assert {d.sample.sample_id: d.sample for d in decoded if d.sample is not None} == got
    errors = [d.error for d in decoded if d.error is not None]
    assert len(errors) == 1 and f"has no schema id {UNKNOWN_ID}" in errors[0]
    assert [m.value()[5:] for m in stack.read(sidecar.kafka.deadletter_topic)] == [CODEC.encode(
        "Sample", want[next(iter(want))])[10:]]


def test_the_trainers_decode_gives_reasons_not_crashes() -> None:
    registry = framing(confluent())
    with pytest.raises(BadRecord, match=f"has no schema id {UNKNOWN_ID}"):
        decode_sample(MAGIC + UNKNOWN_ID.to_bytes(4, "big") + b"\x02", registry)
    with pytest.raises(BadRecord, match="neither the Confluent magic byte 00 nor the single-object marker"):
        decode_sample(b"\x07junk", registry)
    label = registry.encode("samples.click", "Label", to_avro("Label", {k: v for k, v in EVENTS[2].items()
                                                                         if k != "type"}))
    with pytest.raises(BadRecord, match="expected a Sample message, got Label"):
        decode_sample(label, registry)


# -- the generator and infra.cat ---------------------------------------------------------------------


def test_the_generator_writes_the_framing_and_infra_cat_reads_both(stack: Stack, capsysbinary: Any) -> None:
    wire_config = confluent()
    cfg = GeneratorConfig(impressions=40, seed=2, run_id="g")
    target = KafkaTarget(stack.bootstrap, stack.impressions, stack.snapshots, stack.labels, wire=wire_config)
    generate(cfg, out=str(stack.events_file), kafka=target)
    registry = framing(wire_config)
    written = [json.loads(line) for line in stack.events_file.open()]
    impressions = stack.read(stack.impressions)
    assert {m.value()[:5] for m in impressions} == {registry.header(stack.impressions, "Impression")}
    # one single-object impression more in the same topic
    extra = {**EVENTS[0], "request_id": "r-single", "impression_id": "i-single"}
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    producer.produce(stack.impressions, WireFormat().encode_event_json(extra), b"r-single")
    producer.flush(10)

    out = io.BytesIO()
    count, bad = dump(stack.bootstrap, [stack.impressions, stack.snapshots, stack.labels], out, wire_config)
    got = sorted(json.dumps(json.loads(line), sort_keys=True) for line in out.getvalue().splitlines())
    want = sorted(json.dumps(to_json_form(e), sort_keys=True) for e in [*written, extra])
    assert (count, bad) == (len(written) + 1, 0) and got == want

    # The command: without the flag the Confluent-framed values are undecodable (and said to be why).
    assert cat_main([stack.impressions, "--bootstrap-servers", stack.bootstrap]) == 0
    err = capsysbinary.readouterr().err.decode()
    assert "read it with wire format confluent" in err and f"{len(impressions)} undecodable" in err
    url = wire_config.schema_registry_url
    assert url is not None
    assert cat_main([stack.impressions, "--bootstrap-servers", stack.bootstrap, "--wire-format", "confluent",
                     "--schema-registry-url", url]) == 0
    captured = capsysbinary.readouterr()
    assert len(captured.out.splitlines()) == len(impressions) + 1 and b"undecodable" not in captured.err


def to_json_form(event: dict[str, Any]) -> dict[str, Any]:
    """An event as infra.cat writes it (every optional field present, with its default)."""
    defaults = {"impression": {"position": 0, "context": {}}, "feature_snapshot": {"sparse": {}, "dense": {}},
                "label": {"value": 1.0}}
    return {**defaults[event["type"]], **event}


# -- the Flink job ----------------------------------------------------------------------------------------


def test_the_flink_engine_refuses_the_confluent_framing_in_one_line(stack: Stack, capsys: Any) -> None:
    config = stack.tmp / "flink.yaml"
    overrides = stack.overrides(kafka__wire={"format": "confluent", "schema_registry_url": "http://registry:8081"})
    config.write_text(yaml.safe_dump(overrides))
    assert sample_join_main(["run", "--engine", "flink", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "kafka.wire.format is confluent: the Flink job reads and writes Avro single-object encoding only" in err
