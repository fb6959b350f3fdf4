"""The sample-join config: defaults (docs/join.md), validation, YAML + flag overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from jobs.config import JoinConfig, SampleJoinConfig, TaskConfig
from jobs.runtime.kafka_io import consumer_settings


def test_defaults_follow_the_design() -> None:
    config = SampleJoinConfig.load(None)
    (task,) = config.join.tasks
    assert (task.name, task.label_type, task.window, task.horizon, task.snapshot_wait) == (
        "click", "click", 600_000, 86_400_000, 30_000)
    assert config.join.out_of_orderness == 5_000
    topics = config.kafka.topics
    assert (topics.impressions, topics.feature_snapshots, topics.labels, topics.samples("click"),
            topics.unmatched, topics.deadletter) == (
        "events.impressions", "events.feature_snapshots", "events.labels", "samples.click",
        "samples.unmatched", "deadletter")


def test_yaml_with_env_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER", "kafka:9092")
    file = tmp_path / "join.yaml"
    file.write_text(
        "join:\n  tasks:\n    - {name: click, window: 2m}\n    - {name: cvr, label_type: conversion, horizon: 7d}\n"
        "kafka:\n  bootstrap_servers: ${BROKER}\n"
    )
    config = SampleJoinConfig.load(file, {"kafka.group_id": "g2", "redis.url": None})
    assert config.kafka.bootstrap_servers == "kafka:9092"
    assert config.kafka.group_id == "g2"
    assert [(t.name, t.label_type, t.window, t.horizon) for t in config.join.tasks] == [
        ("click", "click", 120_000, 86_400_000), ("cvr", "conversion", 600_000, 604_800_000)]


@pytest.mark.parametrize(
    ("task", "message"),
    [({"name": "click", "window": "0s"}, "window must be positive"),
     ({"name": "click", "window": "2h", "horizon": "1h"}, "horizon .* must be at least the window"),
     ({"name": "click", "window": "10s", "snapshot_wait": "30s"}, "snapshot_wait .* must not exceed"),
     ({"name": "click through"}, "name"),
     ({"name": "click", "windw": "1m"}, "Extra inputs are not permitted")],
)
def test_bad_tasks_are_one_error(task: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SampleJoinConfig.load(None, {"join.tasks": [task]})


def test_task_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        JoinConfig(tasks=(TaskConfig(name="click"), TaskConfig(name="click")))


def test_consumer_settings_the_join_rests_on_cannot_be_changed(tmp_path: Path) -> None:
    """Range assignment (co-partitioning: partition p of every input on one member) and offsets kept
    with the Redis checkpoint: a ``kafka.consumer`` override would win over the runtime's own, so the
    config refuses it in one line naming the file; the runtime's consumer starts from the pinned ones."""
    path = tmp_path / "join.yaml"
    path.write_text("kafka:\n  consumer:\n    partition.assignment.strategy: cooperative-sticky\n")
    with pytest.raises(ConfigError) as info:
        SampleJoinConfig.load(path)
    text = str(info.value)
    assert "partition.assignment.strategy is 'cooperative-sticky'; it must stay range" in text
    assert str(path) in text and "\n" not in text
    path.write_text("kafka:\n  consumer:\n    enable.auto.commit: 'false'\n    fetch.wait.max.ms: 20\n")
    config = SampleJoinConfig.load(path)
    settings = consumer_settings("broker:9092", "g", config.kafka.client_settings("consumer"))
    assert settings["partition.assignment.strategy"] == "range" and settings["enable.partition.eof"] is True
    assert settings["fetch.wait.max.ms"] == 20
