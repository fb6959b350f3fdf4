"""Fresh, single-partition topics and a Redis prefix for one embedded-runtime test, and a topic reader."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from common.topics import create_topics
from jobs.config import SampleJoinConfig


def isolated_config(
    bootstrap: str, redis_url: str, tag: str, consumer: dict[str, Any] | None = None, **extra: Any
) -> tuple[SampleJoinConfig, dict[str, str]]:
    """A bounded-mode config on new topics named after ``tag``; returns it and the input topic of each
    event type. ``consumer``: extra consumer settings; ``extra`` sets top-level sections (``join``, ...)."""
    topics = {kind: f"events.{kind}.{tag}" for kind in ("impression", "feature_snapshot", "label")}
    create_topics(bootstrap, {t: (1, 0) for t in topics.values()})
    config = SampleJoinConfig.model_validate({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"g-{tag}", "topics": {
            "impressions": topics["impression"], "feature_snapshots": topics["feature_snapshot"],
            "labels": topics["label"], "samples_prefix": f"samples.{tag}.", "unmatched": f"unmatched.{tag}",
            "deadletter": f"deadletter.{tag}"}, "consumer": consumer or {}},
        "redis": {"url": redis_url, "key_prefix": f"test-{tag}"},
        "checkpoint": {"interval": "300ms"},
        "local": {"exit_when_idle": "2s"},
        **extra,
    })
    return config, topics


def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` from the start, as confluent-kafka messages."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out, ended, deadline = [], 0, time.monotonic() + 60
        while ended < len(meta.partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error():
                    ended += 1
                else:
                    out.append(msg)
        return out
    finally:
        consumer.close()
