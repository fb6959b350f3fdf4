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


class Floors(StrictConfig):
    """Absolute limits on a version's own metrics on matured impressions. A floor is broken only when
    the whole interval at the confidence lies past it (an AUC of 0.54 +- 0.03 does not break 0.55)."""

    # No better than chance. A young model on a weak signal sits near 0.55 while healthy; the data
    # checks, not this floor, catch a stream whose labels stopped following its features.
    min_auc: float | None = Field(default=0.5, ge=0.0, le=1.0)
    max_logloss: float | None = Field(default=None, gt=0.0)
    # Off by default: on labels matured for ``gate.maturity`` the clicks still to come are missing, so a
    # calibrated model's bias is above 1 by the share of them (1.6 when 40 % come later); the paired
    # ``max_bias_shift`` needs no labels.
    min_prediction_bias: float | None = Field(default=None, ge=0.0)
    max_prediction_bias: float | None = Field(default=None, gt=0.0)


class Thresholds(Floors):
    """The floors, and margins against the reference (the versions that were current when the same
    impressions arrived), each tested one-sided: a candidate is refused when it is significantly worse
    than the reference by more than the margin, never because a point estimate moved by chance."""

    max_auc_drop: float | None = Field(default=0.01, ge=0.0)  # reference AUC - candidate AUC (DeLong, paired)
    # A healthy model in training moves its level by +-20 % between versions, and its progressive log
    # loss against the reference's by -11 % .. +11 % (a cold start read from a backlog partition by
    # partition): the margins below are for a broken model, not for that.
    max_logloss_increase: float | None = Field(default=0.1, ge=0.0)  # relative, on the paired per-impression mean
    max_bias_shift: float | None = Field(default=0.5, gt=0.0)  # mean prediction / reference's, either way


class DataChecks(StrictConfig):
    """The stream's statistics over the samples a candidate trained on since the current version,
    against those recorded for the current version; a difference beyond the tolerance, significant at
    ``confidence``, marks the data bad (the candidate is refused; a current version trained on it is
    rolled back). Blocks of ``block`` samples in arrival order (see trainer/sidecar/data_checks.py)."""

    enabled: bool = True
    block: int = Field(default=2_000, ge=50)
    reference_blocks: int = Field(default=10, ge=1)  # blocks before a version's export: its reference
    history_blocks: int = Field(default=1_000, ge=10)  # blocks remembered (the span checked at most)
    confidence: float = Field(default=0.999, gt=0.5, lt=1.0)
    click_rate_change: float | None = Field(default=0.2, gt=0.0)  # relative; healthy streams measured within 0.1
    # LATE_POSITIVE share below this x the reference's: a join that drops them sends it to 0, while a cold
    # stream's share climbs for hours (a backlog read partition by partition mixes those hours)
    late_share_ratio: float | None = Field(default=0.1, gt=0.0, lt=1.0)
    missing_rate_change: float | None = Field(default=0.1, gt=0.0, le=1.0)  # absolute, per feature
    distinct_share_ratio: float | None = Field(default=2.0, gt=1.0)  # per feature, either way
    top_share_change: float | None = Field(default=0.2, gt=0.0, le=1.0)  # absolute, per feature
    auc_drop: float | None = Field(default=0.05, gt=0.0)  # the early labels' AUC of the progressive scores


class GateConfig(StrictConfig):
    """Validation before publishing, on matured impressions: each impression's label once it is at least
    ``maturity`` old in stream time (a NEGATIVE later corrected by its LATE_POSITIVE counts once, as
    clicked), scored when its first sample arrived by the training model (before training on it) and by
    the version then current; not those that came while the model had trained fewer than ``warmup``
    samples (a model learning from scratch says nothing of the versions it becomes). The last
    ``evidence`` of them judge a candidate; with fewer than ``min_samples`` the tests are not run
    (nothing speaks against the candidate; the data checks still apply). ``capacity`` impressions are
    remembered (``sample_share`` of them, chosen by impression_id hash, when the traffic over
    ``maturity`` exceeds it)."""

    maturity: DurationMs = 30 * 60_000
    warmup: int = Field(default=20_000, ge=0)  # samples trained before evidence counts
    evidence: int = Field(default=20_000, ge=10)
    min_samples: int = Field(default=1_000, ge=10)
    capacity: int = Field(default=100_000, ge=100)
    sample_share: float = Field(default=1.0, gt=0.0, le=1.0)
    confidence: float = Field(default=0.99, gt=0.5, lt=1.0)
    thresholds: Thresholds = Thresholds()
    data: DataChecks = DataChecks()

    @model_validator(mode="after")
    def _sizes(self) -> GateConfig:
        if not self.min_samples <= self.evidence <= self.capacity:
            raise ValueError(
                f"need gate.min_samples <= gate.evidence <= gate.capacity, got {self.min_samples}, "
                f"{self.evidence}, {self.capacity}"
            )
        return self


class RollbackConfig(StrictConfig):
    """Automatic rollback of the current version on a breach that persists for ``consecutive``
    evaluation windows: its floors broken on ``window`` matured impressions it scored, or the data
    checks failing on samples it was trained on (then the pointer goes to the newest published version
    trained before the bad data). At most once per published version."""

    enabled: bool = True
    window: int = Field(default=2_000, ge=10)
    consecutive: int = Field(default=2, ge=1)
    floors: Floors = Floors()


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
        if self.export_interval < 1_000:
            raise ValueError(f"export_interval must be at least 1s, got {self.export_interval} ms")
        return self
