"""Shared integration fixtures: a real Apache Kafka broker and a real redis-server on free loopback ports.

`KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` point the suite at external services instead (then each
test still gets its own topics, and Redis keys are namespaced by the tests themselves).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.topics import create_topics
from devstack.processes import ManagedProcess, free_port
from devstack.stack import start_broker, start_redis

# Fast consumer-group joins against the local broker (docs/architecture.md): ~3 s instead of ~23 s.
FAST_GROUP_SETTINGS = {"max.poll.interval.ms": 10_000, "session.timeout.ms": 6_000}


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def kafka_bootstrap(service_logs: Path) -> Iterator[str]:
    """bootstrap.servers of a real broker: Apache Kafka (KRaft) started on a free port for this session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker: ManagedProcess = start_broker(free_port(), service_logs / "broker.log")
    try:
        yield broker.address
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def redis_url(service_logs: Path) -> Iterator[str]:
    """URL of a real redis-server started on a free port for this session."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    server = start_redis(free_port(), service_logs / "redis.log")
    try:
        yield server.address
    finally:
        server.stop()


@pytest.fixture
def unique_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """Factory: `unique_topic("events.labels", partitions=2)` creates and returns a fresh topic name."""

    def make(base: str = "topic", partitions: int = 1) -> str:
        name = f"{base}.{uuid.uuid4().hex[:10]}"
        create_topics(kafka_bootstrap, {name: (partitions, 0)})
        return name

    return make


@pytest.fixture
def kafka_client_config(kafka_bootstrap: str) -> dict[str, object]:
    """Base confluent-kafka settings for tests: the broker plus fast group-join timeouts."""
    return {"bootstrap.servers": kafka_bootstrap, **FAST_GROUP_SETTINGS}
