"""The streaming PyFlink job (``run --engine flink``).

The job's graph -- decode with the schemas codec, watermarks with idleness, key_by(request_id), the
join, Avro encoding, routing by topic, dead letters with headers, checkpointing with RocksDB state --
runs here with the ``filesystem`` connector in place of Kafka (:class:`FileTables`: JSON lines, key
and value base64), fed with Avro single-object encoded events, and its output is checked against the
local replay engine on the same events. The Kafka DDL is checked, and planned by Flink with the jars
of ``make setup``; the job on a real broker is in ``test_flink_kafka.py``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jobs.config import SampleJoinConfig
from jobs.runtime.flink.job import CONNECTOR_ENV, CONNECTOR_JAR, CONNECTOR_URL, connector_jar
from jobs.runtime.flink.kafka import KafkaTables, sink_table_name

ROOT = Path(__file__).resolve().parents[2]
HORIZON_MS = 600_000

CONFIG = {
    "join": {
        "tasks": [{"name": "click", "window": "1m", "horizon": "10m"}],
        "out_of_orderness": "5s",
        "idleness": "2s",
    },
    "kafka": {"bootstrap_servers": "127.0.0.1:1", "group_id": "sj-test"},
    "flink": {"parallelism": 2, "checkpoint_interval": "1s", "state_backend": "rocksdb"},
}


def _config(**flink: Any) -> SampleJoinConfig:
    data = json.loads(json.dumps(CONFIG))
    data["flink"].update(flink)
    return SampleJoinConfig.model_validate(data)


# -- no Flink needed ------------------------------------------------------------------------------
def test_connector_jar_from_env_or_config_or_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jobs.runtime.flink.job as flink_job

    jar = tmp_path / CONNECTOR_JAR
    jar.write_bytes(b"PK")
    assert connector_jar(_config(), {CONNECTOR_ENV: str(jar)}) == jar.resolve()
    assert connector_jar(_config(connector_jar=str(jar)), {}) == jar.resolve()
    monkeypatch.setattr(flink_job, "DEFAULT_CONNECTOR_JAR", jar)  # where `make setup` puts it
    assert connector_jar(_config(), {}) == jar
    monkeypatch.setattr(flink_job, "DEFAULT_CONNECTOR_JAR", tmp_path / "not-fetched.jar")
    with pytest.raises(Exception, match="make setup") as missing:
        connector_jar(_config(), {})
    assert CONNECTOR_URL in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(Exception, match="does not exist"):
        connector_jar(_config(), {CONNECTOR_ENV: str(tmp_path / "nope.jar")})


def test_missing_connector_jar_is_a_one_line_error_through_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "sample-join.yaml"
    config.write_text("kafka:\n  bootstrap_servers: 127.0.0.1:1\n")
    env = {**os.environ, CONNECTOR_ENV: "/nonexistent/flink-sql-connector-kafka.jar"}
    result = subprocess.run(
        [sys.executable, "-m", "jobs.sample_join", "run", "--engine", "flink", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "flink-sql-connector-kafka" in lines[0] and CONNECTOR_URL in lines[0]
    assert "Traceback" not in result.stderr


def test_kafka_ddl() -> None:
    config = SampleJoinConfig.model_validate(
        {
            **CONFIG,
            "kafka": {
                "bootstrap_servers": "k1:9092,k2:9092",
                "group_id": "g",
                "consumer": {"security.protocol": "SSL"},
                "producer": {"linger.ms": 20},
            },
        }
    )
    tables = KafkaTables(config)
    source = tables.source_ddl()
    assert "'topic' = 'events.impressions;events.feature_snapshots;events.labels'" in source
    assert "'properties.bootstrap.servers' = 'k1:9092,k2:9092'" in source
    assert "'properties.group.id' = 'g'" in source
    assert "'properties.security.protocol' = 'SSL'" in source
    assert "METADATA FROM 'partition' VIRTUAL" in source and "METADATA FROM 'offset' VIRTUAL" in source
    sink = tables.sink_ddl("samples.click", headers=False)
    assert sink.startswith(f"CREATE TEMPORARY TABLE {sink_table_name('samples.click')} ")
    assert "'sink.delivery-guarantee' = 'at-least-once'" in sink and "'properties.linger.ms' = '20'" in sink
    assert "headers" not in sink and "transactional" not in sink
    assert "`headers` MAP<STRING, BYTES> METADATA" in tables.sink_ddl("deadletter", headers=True)
    assert "'scan.watermark.idle-timeout' = '2000 ms'" in source and "WATERMARK FOR `event_time`" in source
    assert "scan.bounded.mode" not in source
    assert "'scan.bounded.mode' = 'latest-offset'" in KafkaTables(config, bounded=True).source_ddl()

    exactly_once = KafkaTables(config.model_copy(update={"flink": config.flink.model_copy(
        update={"delivery_guarantee": "exactly-once"})}))
    sink = exactly_once.sink_ddl("samples.click", headers=False)
    assert "'sink.delivery-guarantee' = 'exactly-once'" in sink
    assert "'sink.transactional-id-prefix' = 'g-samples.click'" in sink
    assert "'properties.transaction.timeout.ms' = '600000'" in sink  # within the broker's 15 min maximum


# -- the graph on Flink's MiniCluster ---------------------------------------------------------------
def _events() -> list[dict[str, Any]]:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "flink_replay_streams", Path(__file__).with_name("test_flink_replay.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = [line for line in module.make_lines(seed=5, requests=150) if line.strip() and line not in module.BAD_LINES]
    return [json.loads(line) for line in lines]


TOPIC_OF = {
    "impression": "events.impressions",
    "feature_snapshot": "events.feature_snapshots",
    "label": "events.labels",
}


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _write_input(events: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Avro-encode the events as the three topics would hold them; add undecodable records."""
    from jobs.runtime.kafka_io import event_json_to_wire
    from schemas import Codec

    codec = Codec.default()
    offsets: Counter[str] = Counter()
    rows = []

    def add(topic: str, key: bytes | None, value: bytes) -> dict[str, Any]:
        row = {"topic": topic, "partition": 0, "offset": offsets[topic], "key": _b64(key), "value": _b64(value)}
        offsets[topic] += 1
        rows.append(row)
        return row

    bad = []
    for n, event in enumerate(events):
        add(TOPIC_OF[event["type"]], event["request_id"].encode(), event_json_to_wire(event))
        if n == 40:
            bad.append(add("events.labels", b"r-bad", b"\x00 not avro at all"))
        if n == 80:  # a valid header and fingerprint of another record: not an event
            sample = {
                "sample_id": "i:click:NEGATIVE",
                "task": "click",
                "request_id": "r",
                "impression_id": "i",
                "user_id": "u",
                "item_id": "v",
                "position": 0,
                "context": {},
                "impression_time_ms": 1,
                "label": 0,
                "attribution": "NEGATIVE",
                "label_time_ms": None,
                "delay_ms": None,
                "emit_time_ms": 2,
                "sparse": {},
                "dense": {},
                "has_snapshot": False,
            }
            bad.append(add("events.impressions", None, codec.encode("Sample", sample)))
        if n == 120:  # a valid Label message that is not a valid event (empty request_id)
            label = {"request_id": "", "impression_id": "i", "label_type": "click", "event_time_ms": 5, "value": 1.0}
            bad.append(add("events.labels", b"", codec.encode("Label", label)))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return bad


def _read_sink(directory: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not directory.exists():
        return rows
    for part in sorted(directory.rglob("*")):
        if part.is_file() and not part.name.startswith("."):
            rows.extend(json.loads(line) for line in part.read_text().splitlines() if line.strip())
    return rows


@pytest.mark.flink
@pytest.mark.slow
def test_streaming_graph_with_file_sources_gives_the_local_engines_samples(tmp_path: Path) -> None:
    from jobs.runtime.flink.env import make_environment
    from jobs.runtime.flink.job import build_job, streaming_options
    from jobs.runtime.flink.kafka import FileTables
    from jobs.runtime.replay.local import run_replay
    from schemas import Codec

    config = _config()
    events = _events()
    source = tmp_path / "input.jsonl"
    bad = _write_input(events, source)
    sinks = tmp_path / "out"

    env = make_environment(config.flink.parallelism, streaming_options(config))
    build_job(env, config, FileTables(source, sinks))
    env.execute("sample-join-test")

    # the reference: the local engine on the same events in the same order
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("".join(json.dumps(e) + "\n" for e in events))
    local = tmp_path / "local"
    run_replay(events_file, local / "s.jsonl", local / "u.jsonl", local / "d.jsonl", config.join)
    expected_samples = [json.loads(line) for line in (local / "s.jsonl").read_text().splitlines()]
    expected_unmatched = [json.loads(line) for line in (local / "u.jsonl").read_text().splitlines()]

    codec = Codec.default()
    samples = []
    for row in _read_sink(sinks / "samples.click"):
        sample = codec.decode(base64.b64decode(row["value"]), "Sample")
        assert base64.b64decode(row["key"]).decode() == sample["impression_id"]
        samples.append(sample)
    canonical = lambda rows: sorted(json.dumps(r, sort_keys=True) for r in rows)  # noqa: E731
    assert len(samples) > 100
    assert canonical(samples) == canonical(expected_samples)

    unmatched = []
    for row in _read_sink(sinks / "samples.unmatched"):
        record = codec.decode(base64.b64decode(row["value"]), "UnmatchedLabel")
        assert base64.b64decode(row["key"]).decode() == record["request_id"]
        unmatched.append(record)
    times = {e["impression_id"]: e["event_time_ms"] for e in reversed(events) if e["type"] == "impression"}

    def keys(records: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
        out: Counter[tuple[Any, ...]] = Counter()
        for u in records:
            t_i = times.get(u["impression_id"])
            late = t_i is not None and u["event_time_ms"] - t_i > HORIZON_MS  # docs/join.md rule 4: either reason
            out[(u["impression_id"], u["label_type"], u["event_time_ms"], "late" if late else u["reason"])] += 1
        return out

    assert unmatched and keys(unmatched) == keys(expected_unmatched)

    dead = _read_sink(sinks / "deadletter")
    assert len(dead) == len(bad)
    by_offset = {(b["topic"], b["offset"]): b for b in bad}
    for row in dead:
        headers = {k: base64.b64decode(v).decode() for k, v in row["headers"].items()}
        assert set(headers) == {"error", "source_topic", "source_partition", "source_offset"}
        original = by_offset[(headers["source_topic"], int(headers["source_offset"]))]
        assert headers["source_partition"] == "0" and headers["error"]
        assert row["value"] == original["value"] and row["key"] == original["key"]


@pytest.mark.flink
def test_kafka_job_graph_plans_with_the_jars_of_setup() -> None:
    """The whole Kafka job (source DDL with its watermark function, the graph, the routed sinks) is
    accepted by Flink with the connector and the function jar that `make setup` provides."""
    from jobs.runtime.flink.env import make_environment
    from jobs.runtime.flink.job import build_job, job_jars, streaming_options

    config = _config(parallelism=1)
    env = make_environment(1, streaming_options(config), jars=job_jars(config))
    build_job(env, config, KafkaTables(config, bounded=True))
    plan = env.get_execution_plan()
    assert "KafkaSource-default_catalog.default_database.sj_events" in plan and "sample-join" in plan
    for topic in ("samples.click", "samples.unmatched", "deadletter"):
        assert sink_table_name(topic) in plan


@pytest.mark.integration
def test_the_job_publishes_the_task_contract_the_trainer_checks(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the embedded runtime does at its start (a real redis-server); a Redis it cannot reach is one
    warning line, not a failure (the job keeps no state there)."""
    import redis

    from common.task_contract import contract_key, read_task_contract
    from devstack.processes import free_port
    from jobs.runtime.flink.job import publish_contract

    prefix = f"flinkcontract{os.getpid()}"
    config = SampleJoinConfig.load(
        None,
        {
            "redis.url": redis_url,
            "kafka.topics.samples_prefix": f"{prefix}.",
            "join.tasks": [{"name": "click", "horizon": "6h"}],
        },
    )
    client = redis.Redis.from_url(redis_url)
    try:
        assert publish_contract(config)
        contract = read_task_contract(client, f"{prefix}.click")
        assert contract is not None and contract.horizon_ms == 6 * 3_600_000
        assert "flink" in contract.published_by
        client.delete(contract_key(f"{prefix}.click"))
    finally:
        client.close()
    unreachable = SampleJoinConfig.load(None, {"redis.url": f"redis://127.0.0.1:{free_port()}/0"})
    assert not publish_contract(unreachable, timeout_s=1.0)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: the task contract was not published" in err
