"""The join's task settings, published in Redis at its start, so that the trainer can check its own.

The two halves run from two config files: the trainer's delayed-feedback correction must use the
join's attribution horizon (``loss.attribution_horizon_ms``) and its dedup must remember a sample at
least that long (``sidecar.dedup.horizon``); nothing in either file can see the other. So the join
writes what it runs with, per samples topic, and the trainer reads the entry of the topic it consumes
(``trainer/sidecar/join_contract.py``) and refuses to start on a disagreement (docs/trainer.md).

One hash per samples topic (the topic, not the task name, so that two joins writing different
topics for one task do not overwrite each other's entry)::

    odl:tasks:<samples topic>   task, topic, label_type, window_ms, horizon_ms, snapshot_wait_ms,
                                published_ms, published_by

The entry is the settings of the last join that started; it has no expiry (a restart rewrites it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from common.config import format_duration_ms
from common.errors import CommonError
from common.services import as_text
from common.topics import samples_topic

KEY_PREFIX = "odl:tasks:"


class TaskContractError(CommonError):
    """A task contract in Redis is not what :func:`publish_task_contract` writes."""


class TaskLike(Protocol):
    """What a join task gives (``jobs.config.TaskConfig``, ``jobs.core.spec.TaskSpec``); durations in ms."""

    name: str
    label_type: str
    window: int
    horizon: int
    snapshot_wait: int


@dataclass(frozen=True)
class TaskContract:
    task: str
    topic: str
    label_type: str
    window_ms: int
    horizon_ms: int
    snapshot_wait_ms: int
    published_ms: int
    published_by: str

    @property
    def key(self) -> str:
        return contract_key(self.topic)

    def origin(self) -> str:
        """Where the values came from, for a message: the key, the publisher and when."""
        when = datetime.fromtimestamp(self.published_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"Redis key {self.key}, published by {self.published_by} at {when}"


_INTS = tuple(f.name for f in fields(TaskContract) if f.type == "int")


def contract_key(topic: str) -> str:
    """The Redis key of the task contract of the join writing ``topic``."""
    return f"{KEY_PREFIX}{topic}"


def publish_task_contract(
    client: Any,
    tasks: Iterable[TaskLike],
    topics: Mapping[str, str] | None = None,
    *,
    published_by: str = "sample-join",
    log: logging.Logger | None = None,
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> list[TaskContract]:
    """Write the contract of every task (one transaction) with ``client`` (a ``redis.Redis``).

    ``topics``: task name -> the samples topic it writes (default ``samples.<task>``)."""
    now = clock_ms()
    contracts = [
        TaskContract(
            task=t.name,
            topic=(topics or {}).get(t.name) or samples_topic(t.name),
            label_type=t.label_type or t.name,
            window_ms=t.window,
            horizon_ms=t.horizon,
            snapshot_wait_ms=t.snapshot_wait,
            published_ms=now,
            published_by=published_by,
        )
        for t in tasks
    ]
    pipe = client.pipeline(transaction=True)
    for c in contracts:
        pipe.delete(c.key)  # a field a later version no longer writes must not linger
        pipe.hset(c.key, mapping={f.name: str(getattr(c, f.name)) for f in fields(TaskContract)})
    pipe.execute()
    if log is not None:
        log.info(
            "task settings published for the trainer",
            extra={"tasks": {c.topic: format_duration_ms(c.horizon_ms) for c in contracts}, "key_prefix": KEY_PREFIX},
        )
    return contracts


def read_task_contract(client: Any, topic: str) -> TaskContract | None:
    """The contract of the join writing ``topic``, or None when none was published (in this Redis).

    Works with clients that decode responses and with those that do not."""
    key = contract_key(topic)
    raw = {as_text(k): as_text(v) for k, v in client.hgetall(key).items()}
    if not raw:
        return None
    values: dict[str, Any] = {}
    for f in fields(TaskContract):
        if f.name not in raw:
            raise TaskContractError(f"task contract {key} has no field {f.name!r} (fields: {sorted(raw)})")
        value = raw[f.name]
        if f.name in _INTS:
            try:
                values[f.name] = int(value)
            except ValueError:
                raise TaskContractError(
                    f"task contract {key}: field {f.name!r} must be an integer, got {value[:40]!r}"
                ) from None
        else:
            values[f.name] = value
    return TaskContract(**values)
