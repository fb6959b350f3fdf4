"""The sample-join deployable's one config model (YAML, env-expanded, strict and frozen).

Both engines (`local`: embedded Kafka + Redis runtime; `flink`: PyFlink job) read this model, and
`replay` builds the `join` part of it from its flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from common.config import DurationMs, StrictConfig, apply_overrides, load_config, validate_config
from common.defaults import ATTRIBUTION_HORIZON_MS, kafka_bootstrap_servers, redis_url
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
from common.wire import WireFormatConfig
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


# librdkafka settings that hold a secret: they belong in kafka.security, where they are SecretStr.
_SECRET_WORDS = ("password", "secret", "jaas", ".pem", "token")


class KafkaSecurity(StrictConfig):
    """How the clients authenticate to the brokers and encrypt (SASL / TLS). Secrets are SecretStr:
    they print as ``**********`` and are revealed only by :meth:`KafkaConfig.client_settings`."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None  # CA bundle (PEM) that signed the brokers' certificates
    ssl_certificate_location: str | None = None  # client certificate (PEM), for mutual TLS
    ssl_key_location: str | None = None  # client key (PEM)
    ssl_key_password: SecretStr | None = None
    ssl_verify_hostname: bool = True

    @model_validator(mode="after")
    def _check(self) -> KafkaSecurity:
        sasl = self.protocol.startswith("SASL_")
        if sasl and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(f"protocol {self.protocol} needs sasl_username and sasl_password")
        if not sasl and (self.sasl_username or self.sasl_password is not None):
            raise ValueError(f"sasl_username / sasl_password are set but protocol {self.protocol} does not use SASL")
        tls_files = (self.ssl_ca_location, self.ssl_certificate_location, self.ssl_key_location, self.ssl_key_password)
        if not self.protocol.endswith("SSL") and any(v is not None for v in tls_files):
            raise ValueError(f"ssl_* settings are set but protocol {self.protocol} does not use TLS")
        return self

    def librdkafka(self) -> dict[str, Any]:
        """The librdkafka settings (secrets revealed): for client construction only."""
        out: dict[str, Any] = {"security.protocol": self.protocol}
        if self.protocol.startswith("SASL_"):
            assert self.sasl_password is not None
            out["sasl.mechanism"] = self.sasl_mechanism
            out["sasl.username"] = self.sasl_username
            out["sasl.password"] = self.sasl_password.get_secret_value()
        if self.protocol.endswith("SSL"):
            files = {"ssl.ca.location": self.ssl_ca_location, "ssl.certificate.location": self.ssl_certificate_location,
                     "ssl.key.location": self.ssl_key_location}
            out.update({k: v for k, v in files.items() if v})
            if self.ssl_key_password is not None:
                out["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            out["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_verify_hostname else "none"
        return out


class KafkaConfig(StrictConfig):
    bootstrap_servers: str = Field(default_factory=kafka_bootstrap_servers)
    group_id: str = "sample-join"
    topics: TopicsConfig = TopicsConfig()
    security: KafkaSecurity = KafkaSecurity()
    # How values are framed: single_object (default) or confluent, with its registry (docs/wire-format.md).
    wire: WireFormatConfig = WireFormatConfig()
    # Extra librdkafka settings for consumer and producer (tuning); these win over ours. No secrets here.
    consumer: dict[str, Any] = {}
    producer: dict[str, Any] = {}

    @field_validator("consumer", "producer")
    @classmethod
    def _no_secrets(cls, settings: dict[str, Any]) -> dict[str, Any]:
        secret = sorted(k for k in settings if any(word in k.lower() for word in _SECRET_WORDS))
        if secret:
            raise ValueError(
                f"{', '.join(secret)}: secrets go in kafka.security (held as a secret, never logged), "
                "not in the plain client settings"
            )
        return settings

    def client_settings(self, role: Literal["consumer", "producer", "admin"] = "admin") -> dict[str, Any]:
        """confluent-kafka settings of a client in ``role``: the brokers, the security settings (secrets
        revealed) and the role's extra settings. Build clients with it; never log what it returns."""
        extra = {"consumer": self.consumer, "producer": self.producer}.get(role, {})
        return {"bootstrap.servers": self.bootstrap_servers, **self.security.librdkafka(), **extra}


class RedisTls(StrictConfig):
    """TLS to Redis (a ``rediss://`` url); the files are PEM."""

    ca_file: str | None = None
    cert_file: str | None = None  # client certificate, for mutual TLS
    key_file: str | None = None
    key_password: SecretStr | None = None
    verify: bool = True


class RedisConfig(StrictConfig):
    """Where the embedded runtime keeps its state. A password written in the url is moved to
    ``password`` (a SecretStr), so that the url itself can be shown in logs and errors."""

    url: str = Field(default_factory=redis_url)
    key_prefix: str = "sample-join"
    username: str | None = None  # Redis 6 ACL user; None: the default user
    password: SecretStr | None = None
    tls: RedisTls | None = None

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_the_url(cls, data: Any) -> Any:
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str):
            return data
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return data
        host = parts.netloc.rsplit("@", 1)[1]
        moved = {**data, "url": urlunsplit(parts._replace(netloc=host))}
        if parts.username:
            moved.setdefault("username", unquote(parts.username))
        if parts.password is not None and data.get("password") is None:
            moved["password"] = unquote(parts.password)
        return moved

    @model_validator(mode="after")
    def _check(self) -> RedisConfig:
        if self.tls is not None and not self.url.startswith("rediss://"):
            raise ValueError("redis.tls is set: the url must use the rediss:// scheme")
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(config.url, **kwargs)`` (secrets revealed).
        Build clients with it; never log what it returns."""
        out: dict[str, Any] = {}
        if self.username:
            out["username"] = self.username
        if self.password is not None:
            out["password"] = self.password.get_secret_value()
        tls = self.tls
        if tls is not None:
            files = {"ssl_ca_certs": tls.ca_file, "ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
            out.update({k: v for k, v in files.items() if v})
            if tls.key_password is not None:
                out["ssl_password"] = tls.key_password.get_secret_value()
            out["ssl_cert_reqs"] = "required" if tls.verify else "none"
            out["ssl_check_hostname"] = tls.verify
        return out


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
