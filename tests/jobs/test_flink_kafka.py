"""The streaming PyFlink job (``run --engine flink``) on a real Apache Kafka broker, end to end.

A generated stream is produced to fresh topics (three partitions each), then joined by
``run --engine flink --exit-when-idle`` (a bounded Kafka source: up to the end offsets at start; the
end of input resolves everything). The samples must equal, field by field, those of the contract's
reference runner on the same events (what the embedded runtime is held to as well), with the
per-partition watermarks of the Kafka source; bad records go to the dead letter with their headers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from jobs.config import SampleJoinConfig
from schemas.codec import Codec
from tests.jobs.runtime.test_embedded import ROOT, Stack, _assert_same_samples, _by_id

pytestmark = pytest.mark.flink
HORIZON_MS = 600_000


def _table_env() -> Any:
    from pyflink.table import StreamTableEnvironment

    from jobs.runtime.flink.env import make_environment
    from jobs.runtime.flink.job import job_jars

    config = SampleJoinConfig.model_validate({"kafka": {"bootstrap_servers": "127.0.0.1:1"}})
    return config, StreamTableEnvironment.create(make_environment(1, jars=job_jars(config)))


def test_event_time_function_reads_every_event_records_time() -> None:
    from jobs.runtime.flink.kafka import EVENT_TIME_FUNCTION, KafkaTables, event_time_spec
    from jobs.runtime.kafka_io import event_json_to_wire

    events = [
        {"type": "impression", "request_id": "r1", "impression_id": "i1", "user_id": "u" * 300, "item_id": "v",
         "event_time_ms": 1_700_000_000_123, "position": 3, "context": {"a": "b"}},
        {"type": "feature_snapshot", "request_id": "r\u00e9", "event_time_ms": 5, "sparse": {"k": "v"},
         "dense": {"x": 1.5}},
        {"type": "label", "request_id": "r2", "impression_id": "i2", "label_type": "click",
         "event_time_ms": -42, "value": 1.0},
    ]
    values = [event_json_to_wire(e) for e in events]
    values += [values[0][:14], values[2][:2] + bytes(8) + values[2][10:], b"", b"\x00"]  # truncated, unknown, junk
    config, t_env = _table_env()
    KafkaTables(config).register_functions(t_env)
    rows = ", ".join(f"(X'{v.hex()}')" for v in values)
    query = f"SELECT {EVENT_TIME_FUNCTION}(v, '{event_time_spec()}') FROM (VALUES {rows}) AS t(v)"
    with t_env.execute_sql(query).collect() as results:
        got = [row[0] for row in results]
    assert got == [1_700_000_000_123, 5, -42, None, None, None, None]


def test_kafka_source_watermarks_are_pushed_into_the_source() -> None:
    from jobs.runtime.flink.kafka import KafkaTables

    config, t_env = _table_env()
    tables = KafkaTables(config, bounded=True)
    tables.register_functions(t_env)
    t_env.execute_sql(tables.source_ddl())
    optimized = t_env.explain_sql(tables.source_query()).split("== Optimized Execution Plan ==")[1]
    assert "WatermarkAssigner" not in optimized
    scan = next(line for line in optimized.splitlines() if "TableSourceScan" in line)
    assert "watermark=[" in scan and "ODL_EVENT_TIME_MS(value" in scan and "idletimeout=[30000]" in scan


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Stack:
    return Stack(kafka_bootstrap, "redis://127.0.0.1:1/0", 3, tmp_path)  # Redis is not used by Flink


def _run_flink(stack: Stack, timeout: float = 420, **flink: Any) -> str:
    config = stack.config_file(flink__checkpoint_interval="1s", flink__state_backend="hashmap",
                               **{f"flink__{k}": v for k, v in flink.items()})
    result = subprocess.run(
        [sys.executable, "-m", "jobs.sample_join", "run", "--engine", "flink", "--config", str(config),
         "--exit-when-idle", "1s"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


def _bad_records(stack: Stack) -> list[tuple[str, bytes, bytes]]:
    """Undecodable records on two input topics: (topic, key, value)."""
    label = {"request_id": "", "impression_id": "i", "label_type": "click", "event_time_ms": 5, "value": 1.0}
    bad = [(stack.labels, b"r-bad", b"\x00 not avro at all"),
           (stack.impressions, b"r-empty", Codec.default().encode("Label", label))]
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    for topic, key, value in bad:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0
    return bad


def _unmatched_keys(stack: Stack, records: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """Unmatched labels; beyond the horizon either reason is right (it depends on the watermark)."""
    times: dict[str, int] = {}
    with stack.events_file.open() as fh:
        for line in fh:
            e = json.loads(line)
            if e["type"] == "impression":
                times.setdefault(e["impression_id"], e["event_time_ms"])
    out: Counter[tuple[Any, ...]] = Counter()
    for u in records:
        t_i = times.get(u["impression_id"])
        late = t_i is not None and u["event_time_ms"] - t_i > HORIZON_MS
        out[(u["impression_id"], u["label_type"], u["event_time_ms"], "late" if late else u["reason"])] += 1
    return out


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.integration
@pytest.mark.slow
def test_flink_job_on_kafka_gives_the_contracts_samples(stack: Stack, parallelism: int) -> None:
    stack.generate(1500, seed=11 + parallelism, duplicate_rate=0.03, orphan_rate=0.01, late_fraction=0.2,
                   beyond_horizon_fraction=0.05)
    bad = _bad_records(stack)
    _run_flink(stack, parallelism=parallelism)

    want, want_unmatched = stack.contract()
    got = stack.samples()
    assert len(got) == len(want)  # a clean run emits every sample once
    _assert_same_samples(_by_id(got), want)
    assert _unmatched_keys(stack, stack.unmatched_records()) == _unmatched_keys(
        stack, [json.loads(u) for u in want_unmatched.elements()])

    dead = stack.read(stack.deadletter)
    assert sorted((m.key(), m.value()) for m in dead) == sorted((k, v) for _, k, v in bad)
    for msg in dead:
        headers = {k: v.decode() for k, v in msg.headers() or []}
        assert set(headers) == {"error", "source_topic", "source_partition", "source_offset"}
        assert headers["error"] and headers["source_topic"] in (stack.labels, stack.impressions)
        assert int(headers["source_partition"]) in range(3) and int(headers["source_offset"]) >= 0


@pytest.mark.integration
@pytest.mark.slow
def test_exactly_once_sink_is_read_back_with_read_committed(stack: Stack) -> None:
    from confluent_kafka import Consumer, TopicPartition

    stack.generate(600, seed=4)
    _run_flink(stack, parallelism=1, delivery_guarantee="exactly-once")
    topic = f"{stack.samples_prefix}click"
    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": "eos-check", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    codec = Codec.default()
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        # transaction markers take offsets too: the end offsets are beyond the records
        end_offsets = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        got, at_end = [], set()
        deadline = time.monotonic() + 60
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(500, 5.0):
                if msg.error():
                    at_end.add(msg.partition())
                else:
                    got.append(codec.decode(msg.value() or b"", "Sample"))
    finally:
        consumer.close()
    want, _ = stack.contract()
    assert len(got) == len(want)
    _assert_same_samples(_by_id(got), want)
    assert end_offsets > len(got)
