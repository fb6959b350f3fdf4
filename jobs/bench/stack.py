"""What the Kafka benchmarks share: their services (started here or the environment's), topic names and config."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Topics:
    tag: str
    partitions: int

    @property
    def impressions(self) -> str:
        return f"bench.impressions.{self.tag}"

    @property
    def snapshots(self) -> str:
        return f"bench.feature_snapshots.{self.tag}"

    @property
    def labels(self) -> str:
        return f"bench.labels.{self.tag}"

    @property
    def inputs(self) -> list[str]:
        return [self.impressions, self.snapshots, self.labels]

    @property
    def samples_prefix(self) -> str:
        return f"bench.samples.{self.tag}."


@contextlib.contextmanager
def services(log_dir: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, redis url): the environment's, or a broker and a redis-server started here."""
    from devstack.processes import free_port
    from devstack.stack import start_broker, start_redis

    started = []
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = start_broker(free_port(), log_dir / "broker.log")
            started.append(broker)
            bootstrap = broker.address
        url = os.environ.get("REDIS_URL")
        if not url:
            server = start_redis(free_port(), log_dir / "redis.log")
            started.append(server)
            url = server.address
        yield bootstrap, url
    finally:
        for proc in reversed(started):
            proc.stop()


def runtime_config(
    bootstrap: str, redis_url: str, topics: Topics, window: str, horizon: str, interval: str, **local: Any
) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"bench-embedded-{uuid.uuid4().hex[:8]}",
            "topics": {
                "impressions": topics.impressions,
                "feature_snapshots": topics.snapshots,
                "labels": topics.labels,
                "samples_prefix": topics.samples_prefix,
                "unmatched": f"bench.unmatched.{topics.tag}",
                "deadletter": f"bench.deadletter.{topics.tag}",
            },
        },
        "redis": {"url": redis_url, "key_prefix": f"bench-{topics.tag}"},
        "join": {"tasks": [{"name": "click", "window": window, "horizon": horizon}]},
        "checkpoint": {"interval": interval},
        "local": local,
    }
