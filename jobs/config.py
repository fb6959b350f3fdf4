"""The sample-join deployable's one config model (YAML, env-expanded, strict and frozen).

Both engines (`local`: embedded Kafka + Redis runtime; `flink`: PyFlink job) read this model, and
`replay` builds the `join` part of it from its flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from infra.config import DurationMs, StrictConfig, apply_overrides, load_config, validate_config
from infra.defaults import kafka_bootstrap_servers, redis_url

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS


class TaskConfig(StrictConfig):
    """One training task: which label type makes a positive, and the timing of the join (DESIGN §6)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    label_type: str = ""  # defaults to the task name
    window: DurationMs = 10 * MINUTE_MS  # W: wait this long for a label before emitting a NEGATIVE
    horizon: DurationMs = 24 * HOUR_MS  # H: a label later than this is unmatched (beyond_horizon)
    snapshot_wait: DurationMs = 30_000  # S: wait at most this long for the feature snapshot

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        if not self.label_type:
            object.__setattr__(self, "label_type", self.name)
        if self.window <= 0:
            raise ValueError(f"task {self.name}: window must be positive, got {self.window} ms")
        if self.horizon < self.window:
            raise ValueError(
                f"task {self.name}: horizon ({self.horizon} ms) must be at least the window ({self.window} ms)"
            )
        if self.snapshot_wait > self.window:
            raise ValueError(
                f"task {self.name}: snapshot_wait ({self.snapshot_wait} ms) must not exceed the window "
                f"({self.window} ms)"
            )
        return self


class JoinConfig(StrictConfig):
    """What the join core needs: the tasks and the watermark policy."""

    tasks: tuple[TaskConfig, ...] = (TaskConfig(name="click"),)
    out_of_orderness: DurationMs = 5_000  # watermark = max event time seen - this - 1 ms
    idleness: DurationMs = 30_000  # a partition silent this long (wall time) stops holding the watermark
    # Caps on one request's state (a flood on one request_id must not grow it without bound); what a
    # cap turns away is counted in the summary (see docs/join.md): impressions beyond the cap are
    # dropped, labels beyond the cap of buffered labels go to unmatched (no_impression) at once.
    max_impressions_per_request: int = Field(default=1_000, ge=1)
    max_buffered_labels_per_request: int = Field(default=1_000, ge=1)

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: tuple[TaskConfig, ...]) -> tuple[TaskConfig, ...]:
        if not tasks:
            raise ValueError("at least one task is required")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        return tasks


class TopicsConfig(StrictConfig):
    """Topic names (DESIGN §4); samples go to ``{samples_prefix}{task}``."""

    impressions: str = "events.impressions"
    feature_snapshots: str = "events.feature_snapshots"
    labels: str = "events.labels"
    samples_prefix: str = "samples."
    unmatched: str = "samples.unmatched"
    deadletter: str = "deadletter"

    def samples(self, task: str) -> str:
        return f"{self.samples_prefix}{task}"


class KafkaConfig(StrictConfig):
    bootstrap_servers: str = Field(default_factory=kafka_bootstrap_servers)
    group_id: str = "sample-join"
    topics: TopicsConfig = TopicsConfig()
    # Extra librdkafka settings for consumer and producer (e.g. security); these win over ours.
    consumer: dict[str, Any] = {}
    producer: dict[str, Any] = {}


class RedisConfig(StrictConfig):
    url: str = Field(default_factory=redis_url)
    key_prefix: str = "sample-join"


class CheckpointConfig(StrictConfig):
    interval: DurationMs = 5_000  # flush outputs, then write state + offsets atomically, this often


class FlinkConfig(StrictConfig):
    connector_jar: str | None = None  # FLINK_KAFKA_CONNECTOR_JAR wins when set
    parallelism: int = Field(default=1, ge=1)
    checkpoint_interval: DurationMs = 30_000
    state_backend: Literal["rocksdb", "hashmap"] = "rocksdb"


class LocalRuntimeConfig(StrictConfig):
    """Knobs of the embedded runtime (``--engine local``) only."""

    # Bounded mode (tests, benchmarks): once every assigned partition is at its end and nothing has
    # arrived for this long (wall time), resolve everything pending as at the end of a bounded input
    # (watermark to +inf), flush, checkpoint and exit. None (the default): run until stopped.
    exit_when_idle: DurationMs | None = None


class MetricsConfig(StrictConfig):
    port: int | None = Field(default=None, ge=0, le=65535)  # Prometheus /metrics; None disables


class SampleJoinConfig(StrictConfig):
    """The whole `python -m jobs.sample_join run --config FILE` configuration."""

    join: JoinConfig = JoinConfig()
    kafka: KafkaConfig = KafkaConfig()
    redis: RedisConfig = RedisConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    flink: FlinkConfig = FlinkConfig()
    metrics: MetricsConfig = MetricsConfig()
    local: LocalRuntimeConfig = LocalRuntimeConfig()

    @classmethod
    def load(cls, path: str | Path | None, overrides: dict[str, Any] | None = None) -> SampleJoinConfig:
        """Load from YAML (or defaults when ``path`` is None), with dotted-key overrides from flags."""
        if path is None:
            return validate_config(apply_overrides({}, overrides or {}), cls)
        return load_config(path, cls, overrides)
