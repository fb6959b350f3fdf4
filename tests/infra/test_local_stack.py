"""The local stack launcher against a real Apache Kafka broker and redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from common.errors import ConfigError
from devstack.processes import free_port
from devstack.stack import LocalStack, StackState, load_topics

pytestmark = pytest.mark.integration


def _stack(tmp_path: Path, topics: Path | None = None) -> LocalStack:
    return LocalStack(tmp_path / "state", free_port(), free_port(), topics or Path("infra/topics.yaml"),
                      environ={})


def test_up_status_roundtrip_down_leaves_nothing(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    state = stack.up(log=lambda _: None)
    try:
        pids = [p.pid for p in state.processes]
        assert len(pids) == 2
        # `up` twice does not start a second pair.
        again = stack.up(log=lambda _: None)
        assert [p.pid for p in again.processes] == pids

        _, health = stack.status()
        assert health == {"kafka": True, "redis": True}

        topic = "events.labels"  # created from topics.yaml
        producer = Producer({"bootstrap.servers": state.kafka_bootstrap_servers})
        payload = uuid.uuid4().hex.encode()
        producer.produce(topic, key=b"r1", value=payload)
        assert producer.flush(10) == 0
        consumer = Consumer({"bootstrap.servers": state.kafka_bootstrap_servers, "group.id": "t",
                             "auto.offset.reset": "earliest", "max.poll.interval.ms": 10_000,
                             "session.timeout.ms": 6_000})
        consumer.subscribe([topic])
        seen = []
        for _ in range(30):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                seen.append(msg.value())
                break
        consumer.close()
        assert seen == [payload]
        assert redis.Redis.from_url(state.redis_url).ping()
    finally:
        stack.down(log=lambda _: None)
    assert not any(p.alive() for p in state.processes)
    assert StackState.load(stack.state_file) is None
    assert "started" in (tmp_path / "state" / "broker.log").read_text()  # the broker's log is in the state folder

    # The broker's storage lives in the state folder: a restarted stack finds the record again.
    restarted = stack.up(log=lambda _: None)
    try:
        consumer = Consumer({"bootstrap.servers": restarted.kafka_bootstrap_servers, "group.id": "t2"})
        partitions = load_topics()[topic][0]
        marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(partitions)]
        consumer.close()
        assert sum(high - low for low, high in marks) == 1
    finally:
        stack.down(log=lambda _: None)


def test_redis_data_survives_down_and_up_and_clean_state_deletes_it(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The stack's Redis writes an append-only file into the state folder (the join's checkpoints and
    the trainer's registry outlive `make down`); `clean-state` removes it, and refuses while running.
    (The session's broker stands in for the stack's own: only Redis is started here.)"""
    stack = LocalStack(tmp_path / "state", free_port(), free_port(), Path("infra/topics.yaml"),
                       environ={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    state = stack.up(log=lambda _: None)
    try:
        client = redis.Redis.from_url(state.redis_url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.set("sample-join:g:0:meta", b"checkpoint")
        client.close()
        refused = subprocess.run([sys.executable, "-m", "infra.local", "clean-state", "--state-dir",
                                  str(stack.state_dir)], capture_output=True, text=True, check=False, timeout=60)
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            f"python -m infra.local clean-state: error: the local stack is running ({kafka_bootstrap}, "
            f"{state.redis_url}); stop it with "
            "'make down' before 'make clean-state'")
    finally:
        stack.down(log=lambda _: None)
    assert (stack.state_dir / "redis").is_dir()

    state = stack.up(log=lambda _: None)
    try:
        assert redis.Redis.from_url(state.redis_url).get("sample-join:g:0:meta") == b"checkpoint"
    finally:
        stack.down(log=lambda _: None)

    done = subprocess.run([sys.executable, "-m", "infra.local", "clean-state", "--state-dir", str(stack.state_dir)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not (stack.state_dir / "redis").exists()
    state = stack.up(log=lambda _: None)
    try:
        assert redis.Redis.from_url(state.redis_url).dbsize() == 0
    finally:
        stack.down(log=lambda _: None)


def test_cli_status_reports_not_running(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "infra.local", "status", "--json", "--state-dir",
                             str(tmp_path)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"running": False}


def test_cli_rejects_unknown_command() -> None:
    result = subprocess.run([sys.executable, "-m", "infra.local", "sideways"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_external_kafka_that_is_unreachable_is_a_one_line_error(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "infra.local", "up", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"python -m infra.local up: error: cannot reach Kafka at KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}"
    )


def test_topics_file_defaults_and_overrides(tmp_path: Path) -> None:
    topics = load_topics()
    assert set(topics) >= {"events.impressions", "events.feature_snapshots", "events.labels",
                           "samples.click", "samples.unmatched", "deadletter"}
    partitions = {topics[t][0] for t in ("events.impressions", "events.feature_snapshots", "events.labels")}
    assert len(partitions) == 1, "event topics must be co-partitioned"
    assert topics["deadletter"][1] == 30 * 86_400_000


def test_topics_file_with_a_typo_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "topics.yaml"
    bad.write_text("topics:\n  events.labels: {partitons: 3}\n")
    with pytest.raises(ConfigError, match=r"topics\.yaml.*partitons"):
        load_topics(bad)


def test_topics_command_creates_configured_topics(kafka_bootstrap: str, tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient

    topics_file = tmp_path / "topics.yaml"
    name = f"events.test.{uuid.uuid4().hex[:8]}"
    topics_file.write_text(f"defaults: {{partitions: 3}}\ntopics:\n  {name}: {{}}\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    command = [sys.executable, "-m", "infra.local", "topics", "--topics", str(topics_file)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    second = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert "1 configured, 1 created" in first.stdout
    assert "1 configured, 0 created" in second.stdout
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert len(metadata.topics[name].partitions) == 3
    # --config: the cluster (and its security) of the join's config, with no address in the environment
    other = f"events.test.{uuid.uuid4().hex[:8]}"
    topics_file.write_text(f"topics:\n  {other}: {{partitions: 2}}\n")
    config = tmp_path / "join.yaml"
    config.write_text(f"kafka:\n  bootstrap_servers: {kafka_bootstrap}\n  security: {{protocol: PLAINTEXT}}\n")
    bare = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    third = subprocess.run([*command, "--config", str(config)], capture_output=True, text=True, env=bare, check=False)
    assert third.returncode == 0 and f"topics on {kafka_bootstrap}: 1 configured, 1 created" in third.stdout, third
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert len(metadata.topics[other].partitions) == 2


def test_cat_dumps_avro_topics_as_json_lines(kafka_bootstrap: str, unique_topic, tmp_path: Path) -> None:
    from schemas import Codec
    from schemas.json_forms import event_json_to_avro

    topic = unique_topic("events.labels", partitions=2)
    codec = Codec.default()
    events = [{"type": "label", "request_id": f"r{i}", "impression_id": f"i{i}", "label_type": "click",
               "event_time_ms": 1_700_000_000_000 + i, "value": 1.0} for i in range(20)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for event in events:
        producer.produce(topic, key=event["request_id"].encode(), value=codec.encode(*event_json_to_avro(event)))
    producer.produce(topic, key=b"bad", value=b"not avro")
    assert producer.flush(10) == 0

    out = tmp_path / "labels.jsonl"
    result = subprocess.run([sys.executable, "-m", "infra.cat", topic, "--bootstrap-servers", kafka_bootstrap,
                             "--out", str(out)], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    dumped = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(dumped, key=lambda e: e["event_time_ms"]) == events
    assert "20 records" in result.stderr and "1 undecodable" in result.stderr
    assert "skipped" in result.stderr and "single-object marker" in result.stderr


def test_cat_reads_the_cluster_of_a_join_config(kafka_bootstrap: str, unique_topic, tmp_path: Path) -> None:
    """--config: the brokers and security of the join's config (secrets from the file), not the command line."""
    topic = unique_topic("events.labels")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"bad", value=b"not avro")
    assert producer.flush(10) == 0
    config = tmp_path / "join.yaml"
    config.write_text(f"kafka:\n  bootstrap_servers: {kafka_bootstrap}\n  security: {{protocol: PLAINTEXT}}\n")
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    result = subprocess.run([sys.executable, "-m", "infra.cat", topic, "--config", str(config)], env=env,
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0 and "0 records" in result.stderr and "1 undecodable" in result.stderr, result.stderr
    config.write_text("kafka:\n  bootstrap: nowhere\n")
    result = subprocess.run([sys.executable, "-m", "infra.cat", topic, "--config", str(config)],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("python -m infra.cat: error:") and "kafka.bootstrap" in result.stderr


def test_cat_unknown_topic_is_one_line(kafka_bootstrap: str) -> None:
    result = subprocess.run([sys.executable, "-m", "infra.cat", "no.such.topic", "--bootstrap-servers",
                             kafka_bootstrap], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"python -m infra.cat: error: topic no.such.topic does not exist on {kafka_bootstrap}")


def test_list_offsets_answers_the_true_high_watermark(kafka_bootstrap: str, unique_topic) -> None:
    """ListOffsets (what bounded readers rely on) gives each partition's real end offset."""
    topic = unique_topic("events.labels", partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    delivered: dict[int, list[int]] = {}
    for i in range(157):
        producer.produce(topic, key=f"r{i}".encode(), value=b"v",
                         on_delivery=lambda err, msg: delivered.setdefault(msg.partition(), []).append(msg.offset()))
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"wm.{uuid.uuid4().hex[:6]}"})
    try:
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(3)}
    finally:
        consumer.close()
    assert sum(high - low for low, high in marks.values()) == 157
    assert {p: high for p, (_, high) in marks.items() if high} == {p: max(o) + 1 for p, o in delivered.items()}


@pytest.mark.parametrize(("command", "expected"), [
    ("flink-submit",
     "python -m infra.local flink-submit: error: the Flink cluster is not running; start it with 'make flink-up'"),
    ("flink-down", None),
])
def test_flink_commands_without_a_cluster(tmp_path: Path, command: str, expected: str | None) -> None:
    result = subprocess.run([sys.executable, "-m", "infra.local", command, "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, check=False, timeout=120)
    if expected:
        assert (result.returncode, result.stderr.strip()) == (1, expected)
    else:
        assert (result.returncode, result.stdout.strip()) == (0, "Flink cluster is not running")
