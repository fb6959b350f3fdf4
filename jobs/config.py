"""The sample-join deployable's one config model (YAML, env-expanded, strict and frozen).

Both engines (`local`: embedded Kafka + Redis runtime; `flink`: PyFlink job) read this model, and
`replay` builds the `join` part of it from its flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from common.config import DurationMs, StrictConfig, apply_overrides, load_config, validate_config
from common.connection import KafkaConnection, RedisConnection
from common.defaults import ATTRIBUTION_HORIZON_MS
from common.services import START_WAIT_S
from common.topics import (
    DEADLETTER_TOPIC,
    FEATURE_SNAPSHOTS_TOPIC,
    IMPRESSIONS_TOPIC,
    LABELS_TOPIC,
    SAMPLES_PREFIX,
    UNMATCHED_TOPIC,
    samples_topic,
)
from jobs.core.spec import (
    DEFAULT_IDLENESS_MS,
    DEFAULT_MAX_BUFFERED_LABELS_PER_REQUEST,
    DEFAULT_MAX_IMPRESSIONS_PER_REQUEST,
    DEFAULT_OUT_OF_ORDERNESS_MS,
    DEFAULT_SNAPSHOT_WAIT_MS,
    DEFAULT_WINDOW_MS,
    JoinSpec,
)


class TaskConfig(StrictConfig):
    """One training task: which label type makes a positive, and the timing of the join (docs/join.md)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    label_type: str = ""  # defaults to the task name
    window: DurationMs = DEFAULT_WINDOW_MS  # W: wait this long for a label before emitting a NEGATIVE
    horizon: DurationMs = ATTRIBUTION_HORIZON_MS  # H: a label later than this is unmatched (beyond_horizon)
    snapshot_wait: DurationMs = DEFAULT_SNAPSHOT_WAIT_MS  # S: wait at most this long for the feature snapshot

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
    out_of_orderness: DurationMs = DEFAULT_OUT_OF_ORDERNESS_MS  # watermark = max event time seen - this - 1 ms
    idleness: DurationMs = DEFAULT_IDLENESS_MS  # a partition silent this long (wall time) stops holding the watermark
    # Caps on one request's state (a flood on one request_id must not grow it without bound); what a
    # cap turns away is counted in the summary (see docs/join.md): impressions beyond the cap are
    # dropped, labels beyond the cap of buffered labels go to unmatched (no_impression) at once.
    max_impressions_per_request: int = Field(default=DEFAULT_MAX_IMPRESSIONS_PER_REQUEST, ge=1)
    max_buffered_labels_per_request: int = Field(default=DEFAULT_MAX_BUFFERED_LABELS_PER_REQUEST, ge=1)

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, tasks: tuple[TaskConfig, ...]) -> tuple[TaskConfig, ...]:
        if not tasks:
            raise ValueError("at least one task is required")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        return tasks

    def spec(self) -> JoinSpec:
        """The plain values the join core takes."""
        return JoinSpec.of(self)


class TopicsConfig(StrictConfig):
    """Topic names (docs/wire-format.md); samples go to ``{samples_prefix}{task}``."""

    impressions: str = IMPRESSIONS_TOPIC
    feature_snapshots: str = FEATURE_SNAPSHOTS_TOPIC
    labels: str = LABELS_TOPIC
    samples_prefix: str = SAMPLES_PREFIX
    unmatched: str = UNMATCHED_TOPIC
    deadletter: str = DEADLETTER_TOPIC

    def samples(self, task: str) -> str:
        return samples_topic(task, self.samples_prefix)


class KafkaConfig(KafkaConnection):
    """The join's ``kafka`` section: the shared connection keys (brokers, client id, ``security``,
    ``wire``, ``consumer`` / ``producer`` settings: common.connection) and the join's group and topics."""

    group_id: str = Field(default="sample-join", min_length=1)
    topics: TopicsConfig = TopicsConfig()
    pinned_consumer: ClassVar[Mapping[str, tuple[Any, str]]] = {
        "enable.auto.commit": (False, "the join commits offsets with its Redis checkpoint"),
        "enable.auto.offset.store": (False, "the join commits offsets with its Redis checkpoint"),
        "enable.partition.eof": (True, "the embedded runtime tells a caught-up partition by it"),
        "partition.assignment.strategy": ("range", "co-partitioning needs partition p of every input on one member"),
    }


class RedisConfig(RedisConnection):
    """Where the embedded runtime keeps its state: the shared connection keys (url, username, password,
    tls: common.connection) and the prefix of the join's keys."""

    key_prefix: str = "sample-join"


OnMissingCheckpoint = Literal["fail", "earliest", "committed"]


class CheckpointConfig(StrictConfig):
    interval: DurationMs = 5_000  # flush outputs, then write state + offsets atomically, this often
    # A partition without a checkpoint in Redis whose consumer group has committed offsets lost its
    # checkpoint (docs/guarantees.md): stop and say so (fail), re-read every retained event (earliest),
    # or resume at the committed offsets without the pending impressions' state (committed).
    on_missing: OnMissingCheckpoint = "fail"


class FlinkConfig(StrictConfig):
    connector_jar: str | None = None  # FLINK_KAFKA_CONNECTOR_JAR wins when set
    parallelism: int = Field(default=1, ge=1)
    checkpoint_interval: DurationMs = 30_000
    state_backend: Literal["rocksdb", "hashmap"] = "rocksdb"
    # Kafka sinks: at-least-once (the trainer dedups on sample_id) or exactly-once (transactions,
    # committed on checkpoints: readers see the output with isolation.level=read_committed).
    delivery_guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once"
    transactional_id_prefix: str | None = None  # exactly-once; default: <group_id>-<topic>


class LocalRuntimeConfig(StrictConfig):
    """Knobs of the embedded runtime (``--engine local``) only."""

    # Bounded mode (tests, benchmarks): once every assigned partition is at its end and nothing has
    # arrived for this long (wall time), resolve everything pending as at the end of a bounded input
    # (watermark to +inf), flush, checkpoint and exit. None (the default): run until stopped.
    exit_when_idle: DurationMs | None = None
    # How long the start waits for Redis and Kafka to answer (a progress line every 5 s) before it
    # gives up with one line, as the trainer does.
    start_wait: DurationMs = int(START_WAIT_S * 1000)


class MetricsConfig(StrictConfig):
    port: int | None = Field(default=None, ge=0, le=65535)  # Prometheus /metrics; None disables
    host: str = "127.0.0.1"  # loopback by default; 0.0.0.0 inside a container whose port is published


class SampleJoinConfig(StrictConfig):
    """The whole `python -m jobs.sample_join run --config FILE` configuration."""

    join: JoinConfig = JoinConfig()
    # built at load time: an address from the environment is read then, not at import
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
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
