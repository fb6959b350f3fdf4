"""The join's task settings in Redis (common/task_contract.py), on a real redis-server."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import pytest
import redis

from common.defaults import ATTRIBUTION_HORIZON_MS
from common.task_contract import (
    TaskContract,
    TaskContractError,
    contract_key,
    publish_task_contract,
    read_task_contract,
)
from jobs.config import SampleJoinConfig, TaskConfig
from jobs.core.spec import DEFAULT_HORIZON_MS, TaskSpec

_RUN = itertools.count()
T = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
def client(redis_url: str, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """The join's clients read bytes, the trainer's registry decoded strings: both must work."""
    c = redis.Redis.from_url(redis_url, decode_responses=request.param)
    yield c
    c.close()


def _topic(name: str) -> str:
    return f"test.{name}.{next(_RUN)}"


def test_published_settings_read_back_as_written(client: redis.Redis) -> None:
    click, conv = _topic("click"), _topic("conv")
    tasks = [TaskConfig(name="click", window="10m", horizon="2h"),
             TaskSpec("conv", "conversion", window=60_000, horizon=86_400_000, snapshot_wait=1_000)]
    written = publish_task_contract(client, tasks, {"click": click, "conv": conv}, published_by="sample-join (group g)",
                                    clock_ms=lambda: T)
    assert read_task_contract(client, click) == written[0] == TaskContract(
        task="click", topic=click, label_type="click", window_ms=600_000, horizon_ms=7_200_000,
        snapshot_wait_ms=30_000, published_ms=T, published_by="sample-join (group g)")
    assert read_task_contract(client, conv) == written[1]
    assert written[1].label_type == "conversion" and written[1].horizon_ms == 86_400_000
    assert written[0].origin() == (
        f"Redis key odl:tasks:{click}, published by sample-join (group g) at 2026-01-01T00:00:00Z")


def test_a_restart_replaces_the_settings_and_nothing_lingers(client: redis.Redis) -> None:
    topic = _topic("click")
    publish_task_contract(client, [TaskConfig(name="click", horizon="24h")], {"click": topic}, clock_ms=lambda: T)
    client.hset(contract_key(topic), "stale", "x")
    publish_task_contract(client, [TaskConfig(name="click", horizon="2h")], {"click": topic}, clock_ms=lambda: T + 1)
    again = read_task_contract(client, topic)
    assert again is not None and (again.horizon_ms, again.published_ms) == (7_200_000, T + 1)
    keys = {k.decode() if isinstance(k, bytes) else k for k in client.hkeys(contract_key(topic))}
    assert keys == {f.name for f in dataclasses.fields(TaskContract)}


def test_the_default_topic_is_the_tasks_samples_topic(client: redis.Redis) -> None:
    name = f"task{next(_RUN)}"
    publish_task_contract(client, [TaskConfig(name=name)])
    contract = read_task_contract(client, f"samples.{name}")
    assert contract is not None and contract.topic == f"samples.{name}"
    client.delete(contract_key(f"samples.{name}"))


def test_nothing_published_reads_as_none(client: redis.Redis) -> None:
    assert read_task_contract(client, _topic("never")) is None


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ({"horizon_ms": "24h"}, r"field 'horizon_ms' must be an integer, got '24h'"),
        ({"published_by": None}, r"has no field 'published_by'"),
    ],
)
def test_a_damaged_contract_is_an_error_naming_the_key_and_field(
    client: redis.Redis, damage: dict[str, str | None], reason: str
) -> None:
    topic = _topic("click")
    publish_task_contract(client, [TaskConfig(name="click")], {"click": topic})
    for field, value in damage.items():
        if value is None:
            client.hdel(contract_key(topic), field)
        else:
            client.hset(contract_key(topic), field, value)
    with pytest.raises(TaskContractError, match=rf"^task contract odl:tasks:{topic}.*{reason}"):
        read_task_contract(client, topic)


def test_the_joins_default_horizon_is_the_shared_one() -> None:
    """The join core may import nothing but the standard library and schemas, so it keeps its own
    default for a JoinSpec built without a config; it must be the deployables' shared one."""
    assert DEFAULT_HORIZON_MS == ATTRIBUTION_HORIZON_MS == TaskSpec("click", "click").horizon
    assert SampleJoinConfig().join.tasks[0].horizon == ATTRIBUTION_HORIZON_MS
