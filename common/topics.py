"""Topic names both deployables default to (docs/wire-format.md), and topic creation through the
admin client, used by the deployables and the developer stack alike.

The names are defined here once: the join's config (``kafka.topics``), the trainer's (it reads
``samples.<task>`` and dead-letters to ``deadletter``) and ``infra/topics.yaml`` (held to them by a
test) take them from here.
"""

from __future__ import annotations

from typing import Any

from common.errors import TopicError

IMPRESSIONS_TOPIC = "events.impressions"
FEATURE_SNAPSHOTS_TOPIC = "events.feature_snapshots"
LABELS_TOPIC = "events.labels"
SAMPLES_PREFIX = "samples."  # a task's samples go to samples.<task>
UNMATCHED_TOPIC = "samples.unmatched"
DEADLETTER_TOPIC = "deadletter"


def samples_topic(task: str, prefix: str = SAMPLES_PREFIX) -> str:
    """The topic a task's samples go to."""
    return f"{prefix}{task}"


def create_topics(
    bootstrap: str, topics: dict[str, tuple[int, int]], timeout_s: float = 15.0, client: dict[str, Any] | None = None
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Existing ones are left as they are.

    ``topics``: name -> (partitions, retention in ms; 0 or less keeps the broker's default).
    ``client``: more admin-client settings (security: SASL/SSL).
    """
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **(client or {})})
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except Exception as exc:
        raise TopicError(f"cannot reach Kafka at {bootstrap} to create topics: {exc}") from exc
    wanted = [
        NewTopic(name, num_partitions=partitions, replication_factor=1,
                 config={"retention.ms": str(retention)} if retention else {})
        for name, (partitions, retention) in topics.items() if name not in existing
    ]
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items() if wanted else []:
        try:
            future.result(timeout_s)
            created.append(name)
        except Exception as exc:
            error = exc.args[0] if exc.args else None
            if getattr(error, "code", lambda: None)() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TopicError(f"cannot create topic {name} on {bootstrap}: {exc}") from exc
    return created
