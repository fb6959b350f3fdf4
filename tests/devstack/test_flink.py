"""The sample join submitted with ``flink run`` to the local session cluster, on a real Apache Kafka.

One stream, two failures, as an operator would meet them: the TaskManager is killed mid-stream (the
job restarts from its last checkpoint on a new TaskManager), then the job is cancelled and
resubmitted from its last retained checkpoint. The job runs unbounded, as in production; once the
stream is in, one far-future event per input partition moves every partition's watermark past the
horizon, which resolves every real impression as the end of a bounded input would. The distinct
samples must then equal the contract's (what a clean run gives).

(A bounded ``--exit-when-idle`` job restarts from a checkpoint and finishes, but one resubmitted
with ``flink run -s`` reads to its end offsets and does not finish: the connector's restored
enumerator does not signal the end of its splits.)
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.flink import ClusterState, FlinkCluster
from devstack.processes import free_port
from tests.jobs.runtime.test_embedded import Stack, _assert_same_samples, _by_id

pytestmark = [pytest.mark.integration, pytest.mark.flink, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlinkCluster]:
    flink = FlinkCluster(tmp_path_factory.mktemp("flink-state"), free_port())
    flink.up(log=lambda _: None)
    try:
        yield flink
    finally:
        flink.down(log=lambda _: None)
        state = ClusterState.load(flink.state_file)
        assert state is None


def _rest(cluster: FlinkCluster, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{cluster.rest_url}{path}", method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def _wait_for(what: str, check: Callable[[], Any], timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _state(cluster: FlinkCluster, job: str) -> str:
    return str(_rest(cluster, f"/jobs/{job}")["state"])


def _checkpoints(cluster: FlinkCluster, job: str) -> dict[str, Any]:
    return dict(_rest(cluster, f"/jobs/{job}/checkpoints"))


def _completed_checkpoint(cluster: FlinkCluster, job: str, after: int = 0) -> dict[str, Any] | None:
    latest = _checkpoints(cluster, job)["latest"]["completed"]
    return latest if latest and latest["id"] > after else None


def _sentinels(stack: Stack) -> None:
    """One event per partition of each input topic, later than every real event by more than W + H."""
    from confluent_kafka import Producer

    from jobs.runtime.kafka_io import event_json_to_wire

    with stack.events_file.open() as fh:
        last = max(json.loads(line)["event_time_ms"] for line in fh)
    t = last + 2 * 86_400_000
    events = {  # three unrelated requests per partition: nothing joins, nothing resolves
        stack.impressions: {"type": "impression", "impression_id": "sentinel", "user_id": "u", "item_id": "v"},
        stack.snapshots: {"type": "feature_snapshot", "sparse": {}, "dense": {}},
        stack.labels: {"type": "label", "impression_id": "none", "label_type": "click", "value": 1.0},
    }
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    for topic, event in events.items():
        for partition in range(stack.partitions):
            request = f"sentinel-{topic}-{partition}"
            wire = event_json_to_wire({**event, "request_id": request, "event_time_ms": t})
            producer.produce(topic, key=request.encode(), value=wire, partition=partition)
    assert producer.flush(10) == 0


def test_submitted_job_survives_a_killed_taskmanager_and_a_resubmission(
    cluster: FlinkCluster, kafka_bootstrap: str, tmp_path: Path
) -> None:
    stack = Stack(kafka_bootstrap, "redis://127.0.0.1:1/0", 2, tmp_path)
    stack.generate(4000, seed=9, late_fraction=0.2, duplicate_rate=0.02, orphan_rate=0.01)
    config = stack.config_file(flink__checkpoint_interval="1s", flink__state_backend="rocksdb",
                               local__exit_when_idle=None)  # unbounded
    want, _ = stack.contract()

    job = cluster.submit(config)
    first = _wait_for("a first checkpoint", lambda: _completed_checkpoint(cluster, job))

    # 1. the TaskManager dies; a new one takes over and the job restarts from its last checkpoint
    state = ClusterState.load(cluster.state_file)
    assert state is not None
    taskmanager = next(p for p in state.processes if p.name == "taskmanager")
    os.killpg(taskmanager.pid, signal.SIGKILL)
    state.processes = [p for p in state.processes if p is not taskmanager]
    state.processes.append(cluster.start_taskmanager())
    state.save(cluster.state_file)  # the fixture's flink-down stops the new one
    restored = _wait_for("the restore from a checkpoint",
                         lambda: _checkpoints(cluster, job)["latest"]["restored"], timeout_s=180)
    assert restored["id"] >= first["id"]

    # 2. cancelled after one more checkpoint, resubmitted from the retained one
    retained = _wait_for("a checkpoint after the restore",
                         lambda: _completed_checkpoint(cluster, job, after=restored["id"]))
    _rest(cluster, f"/jobs/{job}?mode=cancel", method="PATCH")
    _wait_for("the cancellation", lambda: _state(cluster, job) == "CANCELED", timeout_s=60)
    job = cluster.submit(config, from_checkpoint=retained["external_path"])
    assert _wait_for("the restored resubmission", lambda: _checkpoints(cluster, job)["latest"]["restored"],
                     timeout_s=180)["external_path"] == retained["external_path"]

    _sentinels(stack)
    got: dict[str, dict[str, Any]] = {}

    def complete() -> bool:
        assert _state(cluster, job) == "RUNNING"
        got.clear()
        got.update(_by_id(stack.samples()))  # at-least-once: repeats carry the same sample
        return len(got) >= len(want)

    _wait_for("every sample", complete, timeout_s=420)
    _rest(cluster, f"/jobs/{job}?mode=cancel", method="PATCH")
    _assert_same_samples(got, want)
