"""At start, the sidecar's horizons against those the join published in Redis (real redis-server)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from common.task_contract import contract_key, publish_task_contract
from jobs.config import TaskConfig
from trainer.config import TrainerConfig
from trainer.sidecar.errors import SidecarError
from trainer.sidecar.join_contract import JoinContractError, check_join_contract

_RUN = itertools.count()
T = 1_767_225_600_000  # 2026-01-01T00:00:00Z
LOG = logging.getLogger("trainer.sidecar")


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)  # as the sidecar's registry reads it
    yield c
    c.close()


def _setup(client: redis.Redis, join_horizon: str | None, **trainer: Any) -> TrainerConfig:
    """A trainer config for a task of its own; the join's settings for it published unless None."""
    task = f"click{next(_RUN)}"
    if join_horizon is not None:
        publish_task_contract(client, [TaskConfig(name=task, horizon=join_horizon)],
                              published_by="sample-join (group g)", clock_ms=lambda: T)
    return TrainerConfig.load(None, {"sidecar.task": task, **trainer})


def test_agreeing_horizons_start_with_one_line(client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    config = _setup(client, "24h")
    with caplog.at_level(logging.INFO, logger="trainer.sidecar"):
        contract = check_join_contract(config, client, LOG)
    assert contract is not None and contract.horizon_ms == config.loss.attribution_horizon_ms == 86_400_000
    assert [r.getMessage() for r in caplog.records] == ["the join's horizon agrees with the trainer's"]


def test_a_trainer_horizon_other_than_the_joins_is_refused_naming_both(client: redis.Redis) -> None:
    config = _setup(client, "2h")  # the trainer keeps its default, 24 h
    with pytest.raises(JoinContractError) as refused:
        check_join_contract(config, client, LOG)
    message = str(refused.value)
    assert isinstance(refused.value, SidecarError) and "\n" not in message
    assert message == (
        "loss.attribution_horizon_ms is 86400000 ms = 1d (the trainer's default), not the join's horizon for "
        f"samples.{config.sidecar.task}, 7200000 ms = 2h (Redis key "
        f"{contract_key(config.sidecar.topic)}, published by sample-join (group g) at 2026-01-01T00:00:00Z): "
        "set loss.attribution_horizon_ms to 7200000"
    )


def test_a_horizon_set_in_the_config_is_named_as_such(client: redis.Redis) -> None:
    config = _setup(client, "24h", **{"loss.attribution_horizon_ms": 7_200_000})
    with pytest.raises(JoinContractError, match=r"^loss\.attribution_horizon_ms is 7200000 ms = 2h \(set in the "
                                                r"trainer's config\), not the join's horizon for samples\."):
        check_join_contract(config, client, LOG)


def test_a_dedup_shorter_than_the_joins_horizon_is_refused(client: redis.Redis) -> None:
    config = _setup(client, "72h", **{"loss.attribution_horizon_ms": 72 * 3_600_000})
    with pytest.raises(JoinContractError) as refused:
        check_join_contract(config, client, LOG)
    assert str(refused.value).startswith(
        "sidecar.dedup.horizon is 172800000 ms = 2d (the trainer's default), shorter than the join's horizon for "
        f"samples.{config.sidecar.task}, 259200000 ms = 3d (Redis key "
    )
    assert str(refused.value).endswith(": set sidecar.dedup.horizon to at least 3d")


def test_both_disagreements_are_one_line(client: redis.Redis) -> None:
    config = _setup(client, "72h", **{"sidecar.dedup.horizon": "1h"})
    with pytest.raises(JoinContractError) as refused:
        check_join_contract(config, client, LOG)
    message = str(refused.value)
    assert "\n" not in message and message.count("; ") == 1
    assert message.startswith("loss.attribution_horizon_ms is 86400000 ms = 1d (the trainer's default), not ")
    assert "; sidecar.dedup.horizon is 3600000 ms = 1h (set in the trainer's config), shorter than " in message


def test_no_contract_leaves_the_horizon_unchecked_said_in_one_line(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    config = _setup(client, None)
    with caplog.at_level(logging.INFO, logger="trainer.sidecar"):
        assert check_join_contract(config, client, LOG) is None
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith(
        f"the join's horizon could not be checked: no task contract at {contract_key(config.sidecar.topic)} in Redis "
    )


def test_a_damaged_contract_leaves_the_horizon_unchecked_with_a_warning(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    config = _setup(client, "24h")
    client.hset(contract_key(config.sidecar.topic), "horizon_ms", "a day")
    with caplog.at_level(logging.INFO, logger="trainer.sidecar"):
        assert check_join_contract(config, client, LOG) is None
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "field 'horizon_ms' must be an integer, got 'a day'" in record.getMessage()
