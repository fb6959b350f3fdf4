"""Hostile records on the event topics of a real broker: each lands in ``deadletter`` with its reason
and source headers, and the good records around them are joined exactly as the contract says."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from jobs.bench.replay import synth_events
from jobs.core import SampleJoin, event_from_json
from jobs.core.local import LocalJoinRunner
from jobs.runtime.embedded.runtime import EmbeddedRuntime
from jobs.runtime.kafka_io import event_json_to_wire
from schemas.codec import Codec
from tests.jobs.bad_inputs import bad_messages
from tests.jobs.runtime.isolated import isolated_config, read_all

pytestmark = pytest.mark.integration


def test_bad_records_on_the_event_topics(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    config, topics = isolated_config(kafka_bootstrap, redis_url, tag, join={
        "tasks": [{"name": "click", "window": "1m", "horizon": "10m"}]})
    good = list(synth_events(400, seed=5, window_ms=60_000, horizon_ms=600_000))
    bad: list[tuple[str, bytes | None]] = [*bad_messages(), ("null value (tombstone)", None)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    kinds = list(topics)
    sent_bad: dict[tuple[str, int], tuple[str, bytes | None]] = {}  # (topic, offset) -> (case name, value)

    def delivered(name: str, value: bytes | None) -> Callable[[Any, Any], None]:
        def on_delivery(err: Any, msg: Any) -> None:
            assert err is None, err
            sent_bad[(msg.topic(), msg.offset())] = (name, value)
        return on_delivery

    step = len(good) // len(bad)
    for i, event in enumerate(good):
        if i % step == 0 and i // step < len(bad):
            name, value = bad[i // step]
            producer.produce(topics[kinds[i // step % 3]], value, f"bad-{i}".encode(),
                             on_delivery=delivered(name, value))
        producer.produce(topics[event["type"]], event_json_to_wire(event), event["request_id"].encode())
    assert producer.flush(30) == 0

    summary = EmbeddedRuntime(config).run()

    letters = read_all(kafka_bootstrap, f"deadletter.{tag}")
    assert summary.deadletter == len(bad) == len(letters) == len(sent_bad)
    reasons = {}
    for msg in letters:
        headers = {k: v.decode() for k, v in msg.headers()}
        assert headers["source_partition"] == "0"
        name, value = sent_bad[(headers["source_topic"], int(headers["source_offset"]))]
        assert headers["error"].strip() and "\n" not in headers["error"], name
        assert msg.value() == (value or b""), name  # the original bytes (a null value as empty bytes)
        assert msg.key() is not None and msg.key().startswith(b"bad-"), name
        reasons[name] = headers["error"]
    assert len(reasons) == len(bad)
    print(f"\n{len(letters)} bad records dead-lettered, each with its reason:\n"
          + "\n".join(f"  {name}: {reason[:90]}" for name, reason in reasons.items()))

    runner = LocalJoinRunner(SampleJoin(config.join))
    for event in good:
        runner.process(event_from_json(event))
    runner.finish()
    want = {s.sample_id: s.to_json() for s in runner.samples}
    codec = Codec.default()
    got = {s["sample_id"]: s for s in (codec.decode(m.value(), "Sample") for m in read_all(kafka_bootstrap,
                                                                                        f"samples.{tag}.click"))}
    assert got == want, f"{len(set(want) - set(got))} missing, {len(set(got) - set(want))} extra"
