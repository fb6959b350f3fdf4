"""Helpers of the sidecar tests: a fresh samples topic per test, Avro producing, the sidecar as a
real subprocess (`python -m trainer run`), and registry reads (fixtures in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from common.topics import create_topics
from schemas import Codec

ROOT = Path(__file__).resolve().parents[3]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def produce(bootstrap: str, topic: str, records: list[dict[str, Any] | bytes]) -> None:
    """Samples (dicts, encoded with the schemas codec) or raw bytes, keyed by impression_id."""
    from confluent_kafka import Producer

    codec = Codec.default()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for record in records:
        if isinstance(record, bytes):
            producer.produce(topic, record, b"raw")
        else:
            producer.produce(topic, codec.encode("Sample", record), record["impression_id"].encode())
        producer.poll(0)
    assert producer.flush(30) == 0


@dataclass
class SidecarEnv:
    """One test's topic, model dir, registry prefix and config file."""

    bootstrap: str
    redis_url: str
    task: str
    model_dir: Path
    config_path: Path
    prefix: str

    @property
    def topic(self) -> str:
        return f"samples.{self.task}"

    def argv(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "trainer", "run", "--config", str(self.config_path), *extra]

    def start(self, *extra: str, log_name: str = "sidecar.log") -> subprocess.Popen[bytes]:
        log = open(self.model_dir.parent / log_name, "ab")  # noqa: SIM115 - owned by the process
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen(self.argv(*extra), cwd=ROOT, stdout=log, stderr=log, env=env)

    def run(self, *extra: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(self.argv(*extra), cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)

    def registry(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def versions(self) -> list[dict[str, Any]]:
        raw = self.registry().hgetall(f"{self.prefix}:versions")
        return sorted((json.loads(v) for v in raw.values()), key=lambda r: r["version"])

    def current(self) -> int | None:
        value = self.registry().get(f"{self.prefix}:current")
        return int(value) if value else None


def sidecar_settings(**overrides: Any) -> dict[str, Any]:
    """A small, fast configuration for tests (a small model, short intervals)."""
    settings: dict[str, Any] = {
        "model": {"embedding_dim": 4, "wide_factor_dim": 2, "hidden_units": [16]},
        "features": {"vocab": {"capacity": 256, "admit_after": 1}},
        "sidecar": {
            "batch": {"size": 128, "max_wait": "200ms"},
            "checkpoint": {"every_steps": 5, "every": "2s"},
            "export_interval": "3s",
            "metrics_port": 0,
            "tensorboard": False,
            # streams of a few thousand samples: no warm-up, small evidence and blocks of statistics
            "gate": {"warmup": 0, "min_samples": 100, "evidence": 2_000, "data": {"block": 200}},
            "rollback": {"window": 300},
            "retry_for": "60s",
        },
    }
    for dotted, value in overrides.items():
        node = settings
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return settings


def make_env(kafka_bootstrap: str, redis_url: str, tmp_path: Path, partitions: int = 1, **overrides: Any) -> SidecarEnv:
    """A fresh ``samples.<task>`` topic, a model dir and a config file for one sidecar."""
    task = f"t{uuid.uuid4().hex[:10]}"
    create_topics(kafka_bootstrap, {f"samples.{task}": (partitions, 0), "deadletter": (1, 0)})
    settings = sidecar_settings(**overrides)
    settings["sidecar"].update(
        {
            "task": task,
            "model_dir": str(tmp_path / "model"),
            "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": f"trainer.{task}"},
            "redis": {"url": redis_url, "key_prefix": f"test:{task}"},
        }
    )
    config_path = tmp_path / "trainer.yaml"
    config_path.write_text(yaml.safe_dump(settings))
    return SidecarEnv(kafka_bootstrap, redis_url, task, tmp_path / "model", config_path, f"test:{task}:{task}")
