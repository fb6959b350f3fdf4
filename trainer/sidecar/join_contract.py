"""At the sidecar's start: its horizons against the ones the join published (common/task_contract.py).

The PU correction weighs live LATE_POSITIVEs by the share of late clicks that can have arrived, up to
the join's attribution horizon, so ``loss.attribution_horizon_ms`` must be the join's horizon; the
dedup must remember a ``sample_id`` at least that long. Both live in the trainer's config, the horizon
in the join's: a disagreement is refused here with one line naming both values and where each came
from. A join that published nothing (an older one, or one on another Redis) leaves
the horizons unchecked, said in one line.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from common.config import format_duration_ms
from common.services import one_line
from common.task_contract import TaskContract, TaskContractError, contract_key, read_task_contract
from trainer.config import TrainerConfig
from trainer.sidecar.errors import SidecarError


class JoinContractError(SidecarError):
    """The trainer's horizons disagree with those of the join writing its topic."""


def _ms(value: int) -> str:
    return f"{value} ms = {format_duration_ms(value)}"


def _source(model: Any, field: str) -> str:
    return "set in the trainer's config" if field in model.model_fields_set else "the trainer's default"


def check_join_contract(config: TrainerConfig, client: Any, log: logging.Logger) -> TaskContract | None:
    """The contract of the join writing the sidecar's topic, once the trainer's horizons agree with it;
    :class:`JoinContractError` when they do not; None (one line logged) when there is none to read."""
    sc = config.sidecar
    key = contract_key(sc.topic)
    try:
        contract = read_task_contract(client, sc.topic)
    except (TaskContractError, redis.RedisError) as exc:
        log.warning("the join's horizon could not be checked: %s", one_line(exc), extra={"key": key})
        return None
    if contract is None:
        log.info(
            "the join's horizon could not be checked: no task contract at %s in Redis %s (the join publishes "
            "it at start; it may use another Redis, or not have started yet)",
            key,
            sc.redis.url,
        )
        return None
    theirs = f"the join's horizon for {contract.topic}, {_ms(contract.horizon_ms)} ({contract.origin()})"
    problems = []
    horizon = config.loss.attribution_horizon_ms
    if horizon != contract.horizon_ms:
        problems.append(
            f"loss.attribution_horizon_ms is {_ms(horizon)} ({_source(config.loss, 'attribution_horizon_ms')}), "
            f"not {theirs}: set loss.attribution_horizon_ms to {contract.horizon_ms}"
        )
    if sc.dedup.horizon < contract.horizon_ms:
        problems.append(
            f"sidecar.dedup.horizon is {_ms(sc.dedup.horizon)} ({_source(sc.dedup, 'horizon')}), shorter than "
            f"{theirs}: set sidecar.dedup.horizon to at least {format_duration_ms(contract.horizon_ms)}"
        )
    if problems:
        raise JoinContractError("; ".join(problems))
    log.info(
        "the join's horizon agrees with the trainer's",
        extra={"topic": contract.topic, "horizon_ms": contract.horizon_ms, "dedup_horizon_ms": sc.dedup.horizon,
               "published_by": contract.published_by, "key": key},
    )
    return contract
