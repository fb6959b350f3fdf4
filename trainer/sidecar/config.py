"""The sidecar's part of the trainer config (``sidecar:`` in TRAINER.yaml; flags override it).

Secrets (the Kafka SASL password, the Redis password) are :class:`pydantic.SecretStr`: they print as
``**********`` in logs, reprs and the config saved beside checkpoints and exports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from common.config import DurationMs, StrictConfig
from common.defaults import DEDUP_HORIZON_MS, kafka_bootstrap_servers, redis_url
from common.services import START_WAIT_S
from common.topics import DEADLETTER_TOPIC, samples_topic
from common.wire import WireFormatConfig


class KafkaConfig(StrictConfig):
    bootstrap_servers: str = Field(default_factory=kafka_bootstrap_servers)  # the join's default too
    group_id: str = "trainer.click"
    deadletter_topic: str = DEADLETTER_TOPIC
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # How values are framed: single_object (default) or confluent, with its registry (docs/wire-format.md).
    wire: WireFormatConfig = WireFormatConfig()
    # Extra librdkafka settings for the consumer (and the dead-letter producer), e.g. timeouts.
    client: dict[str, Any] = Field(default_factory=dict)

    def client_settings(self) -> dict[str, Any]:
        """librdkafka settings shared by the consumer and the producer (secrets revealed here only)."""
        settings: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            settings["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            settings["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            settings["sasl.password"] = self.sasl_password.get_secret_value()
        return {**settings, **self.client}


class RedisConfig(StrictConfig):
    url: str = Field(default_factory=redis_url)  # the join's default too
    password: SecretStr | None = None
    key_prefix: str = "odl:trainer"


class BatchConfig(StrictConfig):
    """A mini-batch closes when it holds ``size`` samples or its first sample waited ``max_wait``."""

    size: int = Field(default=256, ge=1)
    max_wait: DurationMs = 1_000


class CheckpointConfig(StrictConfig):
    """A checkpoint every ``every_steps`` train steps or ``every`` (whichever comes first)."""

    every_steps: int = Field(default=500, ge=1)
    every: DurationMs = 30_000
    keep: int = Field(default=3, ge=2)


class DedupConfig(StrictConfig):
    """``sample_id``s remembered for ``horizon`` of event time, at most ``max_entries`` (the oldest are
    forgotten first beyond that). The horizon must be at least the join's attribution horizon; the
    default doubles the join's default (24 h), a margin for partitions whose event time lags the
    others (the dedup's clock is the largest emit time seen on any partition)."""

    horizon: DurationMs = DEDUP_HORIZON_MS
    max_entries: int = Field(default=2_000_000, ge=1)


class Thresholds(StrictConfig):
    """Value thresholds (absolute) and change thresholds (against a reference), as TFMA's."""

    min_auc: float | None = Field(default=0.55, ge=0.0, le=1.0)
    max_logloss: float | None = Field(default=None, gt=0.0)
    min_prediction_bias: float | None = Field(default=0.5, ge=0.0)
    max_prediction_bias: float | None = Field(default=2.0, gt=0.0)
    max_auc_drop: float | None = Field(default=0.02, ge=0.0)  # reference AUC - this AUC
    max_logloss_increase: float | None = Field(default=0.05, ge=0.0)  # relative: this / reference - 1
    max_bias_shift: float | None = Field(default=None, ge=0.0)  # |bias - 1| grows by more than this


class GateConfig(StrictConfig):
    """Validation before publishing: the candidate and the current version on the most recent
    ``slice`` samples of the stream, each scored before anything was trained on it."""

    slice: int = Field(default=2_000, ge=10)
    min_samples: int = Field(default=200, ge=10)  # fewer held-out samples: the candidate is refused
    thresholds: Thresholds = Thresholds()


class RollbackConfig(StrictConfig):
    """Automatic rollback: every ``min_samples`` live samples the current version scored, its metrics
    on them outside ``thresholds`` (changes against the previous good version's published metrics)
    move the pointer back to that version (once per published version)."""

    enabled: bool = True
    min_samples: int = Field(default=1_000, ge=10)
    thresholds: Thresholds = Thresholds(min_auc=None, max_auc_drop=0.05, max_logloss_increase=0.25)


class SidecarConfig(StrictConfig):
    """Everything `trainer run` adds to the model/loss config: input, checkpoints, versions, registry."""

    task: str = "click"
    # built at load time: an address from the environment is read then, not at import
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    model_dir: Path = Path("model")
    batch: BatchConfig = BatchConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    dedup: DedupConfig = DedupConfig()
    export_interval: DurationMs = 60_000
    keep_versions: int = Field(default=5, ge=2)
    gate: GateConfig = GateConfig()
    rollback: RollbackConfig = RollbackConfig()
    # Slots per tracked field when features.vocab.capacity is unset (the stream's size is unknown).
    vocab_capacity: int = Field(default=1 << 16, ge=16)
    warm_start: Path | None = None  # an offline export or checkpoint directory to start from
    watch_dir: Path | None = None  # re-initialise from a newer export appearing here
    watch_every: DurationMs = 60_000
    distill_from: Path | None = None  # an export whose predictions are the distillation teacher
    metrics_port: int | None = Field(default=9109, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"  # loopback by default; 0.0.0.0 inside a container whose port is published
    tensorboard: bool = True  # summaries under <model_dir>/tensorboard
    summary_every_steps: int = Field(default=10, ge=1)  # progressive metrics and summaries this often
    exit_when_idle: DurationMs | None = None  # bounded mode: stop once drained and idle this long
    retry_for: DurationMs = 120_000  # Kafka/Redis unreachable longer than this: give up with an error
    # At start, Kafka and Redis unreachable this long (a progress line every 5 s): one error line, exit 1.
    start_wait: DurationMs = int(START_WAIT_S * 1000)

    @property
    def topic(self) -> str:
        return samples_topic(self.task)

    @property
    def checkpoint_dir(self) -> Path:
        return self.model_dir / "checkpoints"

    @model_validator(mode="after")
    def _check(self) -> SidecarConfig:
        if self.gate.min_samples > self.gate.slice:
            raise ValueError(f"gate.min_samples ({self.gate.min_samples}) exceeds gate.slice ({self.gate.slice})")
        if self.export_interval < 1_000:
            raise ValueError(f"export_interval must be at least 1s, got {self.export_interval} ms")
        return self
