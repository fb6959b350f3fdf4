"""The embedded runtime restarted without its checkpoint, against a real broker and a real Redis.

A partition without a checkpoint in Redis but with committed offsets in its consumer group lost its
checkpoint (the runtime commits every checkpoint's offsets): ``checkpoint.on_missing`` decides what
happens (fail by default; earliest; committed), and it is logged and counted. A first start has no
committed offsets and reads from ``auto.offset.reset``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from jobs.runtime.embedded.metrics import RuntimeMetrics
from jobs.runtime.embedded.runtime import EmbeddedRuntime
from jobs.synthetic import DEFAULT_START_MS
from tests.jobs.runtime.test_embedded import Stack, _by_id, _wait

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Stack:
    return Stack(kafka_bootstrap, redis_url, 3, tmp_path)


def _events(stack: Stack) -> int:
    """Events the last ``stack.generate`` wrote."""
    with stack.events_file.open() as fh:
        return sum(1 for _ in fh)


def _committed(stack: Stack) -> dict[str, int]:
    """The group's committed offsets, as ``topic[p]`` -> offset."""
    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": stack.group})
    try:
        wanted = [TopicPartition(t, p) for t in (stack.impressions, stack.snapshots, stack.labels)
                  for p in range(stack.partitions)]
        return {f"{tp.topic}[{tp.partition}]": tp.offset for tp in consumer.committed(wanted, timeout=10)
                if tp.offset >= 0}
    finally:
        consumer.close()


def _checkpointed(stack: Stack) -> dict[str, int]:
    """The checkpoints' offsets in Redis, as ``topic[p]`` -> next offset."""
    client = redis.Redis.from_url(stack.redis_url)
    out = {}
    for p in range(stack.partitions):
        for field, value in client.hgetall(f"{stack.key_prefix}:{stack.group}:{p}:meta").items():
            if field.startswith(b"o:"):
                out[f"{field[2:].decode()}[{p}]"] = int(value)
    return out


def _forget_checkpoints(stack: Stack) -> None:
    """What a Redis that lost its data (not persisted, flushed) leaves of the group: nothing."""
    client = redis.Redis.from_url(stack.redis_url)
    keys = list(client.scan_iter(match=f"{stack.key_prefix}:{stack.group}:*"))
    assert keys
    client.delete(*keys)


def _run(stack: Stack, **extra: object) -> tuple[int, float]:
    """A bounded run in this process; returns its events in and the lost-checkpoint counter."""
    metrics = RuntimeMetrics()
    summary = EmbeddedRuntime(stack.config(**extra), metrics=metrics).run()
    assert summary.finished_input
    lost = metrics.registry.get_sample_value("sample_join_lost_checkpoints_total")
    assert lost is not None
    return summary.events_in, lost


def test_a_lost_checkpoint_fails_or_resumes_as_configured(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jobs.runtime")
    stack.generate(500, seed=1, run_id="a")
    first = _events(stack)
    assert _run(stack) == (first, 0.0)  # a first start, even under the default (fail)
    assert any("(a first start)" in r.getMessage() for r in caplog.records)
    # the group's committed offsets follow the checkpoint (that is how a lost one is recognised)
    assert _checkpointed(stack) == _committed(stack) and len(_committed(stack)) == 3 * stack.partitions
    committed = _committed(stack)

    stack.generate(300, seed=2, run_id="b", start_ms=DEFAULT_START_MS + 86_400_000)  # a second run, a day later
    second = _events(stack)
    _forget_checkpoints(stack)

    # the default, fail: one line naming the group and the partitions, exit 1, nothing consumed
    rc, err = _wait(stack.cli(stack.config_file()), 120)
    assert rc == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        f"python -m jobs.sample_join run: error: lost checkpoint: group {stack.group} has committed offsets for "
        "partitions [0, 1, 2] ("
    ), last
    assert all(f"{tp}={offset}" in last for tp, offset in committed.items()), last
    assert "--on-missing-checkpoint earliest" in last and "committed" in last
    assert _committed(stack) == committed

    # committed: resumes where the group was; nothing before the committed offsets is read again
    caplog.clear()
    assert _run(stack, checkpoint={"interval": "500ms", "on_missing": "committed"}) == (second, 3.0)
    lost_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lost checkpoint")]
    assert len(lost_lines) == 1 and "checkpoint.on_missing=committed" in lost_lines[0], lost_lines
    assert not any("(a first start)" in r.getMessage() for r in caplog.records)

    # earliest: every retained event again; the state is rebuilt exactly, so every sample emitted
    # again is identical to its first copy
    _forget_checkpoints(stack)
    assert _run(stack, checkpoint={"interval": "500ms", "on_missing": "earliest"}) == (first + second, 3.0)
    _by_id(stack.samples())
    assert _checkpointed(stack) == _committed(stack)

