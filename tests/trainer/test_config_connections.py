"""The trainer's ``sidecar.kafka`` / ``sidecar.redis``: the join's connection model (common.connection) with
the trainer's own keys, the security keys the shipped trainer configs spell flat, and saved configs
written with the trainer's earlier keys still read back."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from common.config import validate_config
from common.connection import KafkaConnection, RedisConnection
from common.errors import ConfigError
from jobs.config import SampleJoinConfig
from trainer.config import KafkaConfig, RedisConfig, TrainerConfig

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-" + uuid.uuid4().hex


def sidecar(kafka: dict[str, object] | None = None, redis: dict[str, object] | None = None) -> TrainerConfig:
    return validate_config({"sidecar": {"kafka": kafka or {}, "redis": redis or {}}}, TrainerConfig, "trainer.yaml")


def test_both_deployables_embed_the_one_connection_model() -> None:
    assert issubclass(KafkaConfig, KafkaConnection) and issubclass(RedisConfig, RedisConnection)
    join, trainer = SampleJoinConfig(), TrainerConfig()
    assert join.kafka.bootstrap_servers == trainer.sidecar.kafka.bootstrap_servers
    assert join.redis.url == trainer.sidecar.redis.url
    # what the trainer has of its own
    assert (trainer.sidecar.kafka.group_id, trainer.sidecar.kafka.deadletter_topic) == ("trainer.click", "deadletter")
    assert trainer.sidecar.redis.key_prefix == "odl:trainer"


def test_the_flat_security_keys_read_as_the_security_section() -> None:
    flat = sidecar({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "trainer",
                    "sasl_password": SECRET})
    nested = sidecar({"security": {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                   "sasl_username": "trainer", "sasl_password": SECRET}})
    assert flat == nested
    settings = flat.sidecar.kafka.client_settings("consumer")
    assert settings["sasl.password"] == SECRET and settings["security.protocol"] == "SASL_SSL"
    assert SECRET not in repr(flat) and SECRET not in flat.model_dump_json()
    # unset ones (a commented-out line, an empty ${VAR:-}) are the defaults
    assert sidecar({"security_protocol": "PLAINTEXT", "sasl_mechanism": None}).sidecar.kafka == KafkaConfig()


@pytest.mark.parametrize(
    ("kafka", "needle"),
    [
        ({"security_protocol": "SSL", "security": {"protocol": "SSL"}}, "security_protocol and security are both set"),
        ({"sasl_username": "me", "sasl_password": SECRET}, "protocol PLAINTEXT does not use SASL"),
        ({"security_protocol": "SASL_SSL", "sasl_username": "me"}, "needs sasl_username and sasl_password"),
        ({"client": {"fetch.wait.max.ms": 10}}, "sidecar.kafka.client: Extra inputs are not permitted"),
        ({"producer": {"sasl.password": SECRET}}, "secrets go in kafka.security"),
    ],
)
def test_kafka_errors_are_one_line_naming_the_file_never_the_secret(kafka: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        sidecar(kafka)
    text = str(info.value)
    assert needle in text and "trainer.yaml" in text and "\n" not in text and SECRET not in text


def test_the_trainer_has_the_joins_tls_acl_user_and_extra_client_settings() -> None:
    config = sidecar(
        {"security": {"protocol": "SSL", "ssl_ca_location": "/ca.pem"}, "client_id": "trainer-1",
         "consumer": {"fetch.wait.max.ms": 10}, "producer": {"linger.ms": 20}},
        {"url": f"rediss://registry:{SECRET}@cache:6380/1", "tls": {"ca_file": "/redis-ca.pem"}},
    )
    kafka, redis = config.sidecar.kafka, config.sidecar.redis
    assert kafka.client_settings("consumer") == {
        "bootstrap.servers": kafka.bootstrap_servers, "client.id": "trainer-1", "security.protocol": "SSL",
        "ssl.ca.location": "/ca.pem", "ssl.endpoint.identification.algorithm": "https", "fetch.wait.max.ms": 10}
    assert kafka.client_settings("producer")["linger.ms"] == 20
    assert redis.url == "rediss://cache:6380/1" and redis.client_kwargs()["username"] == "registry"
    assert redis.client_kwargs()["password"] == SECRET and redis.client_kwargs()["ssl_ca_certs"] == "/redis-ca.pem"
    assert SECRET not in repr(config)


def test_the_shipped_kubernetes_config_reads_its_secrets_into_security(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "trainer")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("REDIS_PASSWORD", SECRET + "-redis")
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM"):
        monkeypatch.delenv(name, raising=False)
    config = TrainerConfig.load(ROOT / "infra" / "k8s" / "base" / "config" / "trainer.yaml").sidecar
    assert config.kafka.security.protocol == "SASL_SSL" and config.kafka.security.sasl_mechanism == "SCRAM-SHA-512"
    assert config.kafka.client_settings()["sasl.password"] == SECRET
    assert config.redis.client_kwargs() == {"password": SECRET + "-redis"}


def test_a_config_saved_with_the_earlier_keys_reads_back() -> None:
    """Checkpoints and exports carry the config of the run that wrote them; a sidecar resuming one written
    before the trainer shared the join's model (flat security keys, ``client``) must still start."""
    saved = TrainerConfig().model_dump(mode="json")
    saved["sidecar"]["kafka"] = {
        "bootstrap_servers": "old:9092", "group_id": "trainer.click", "deadletter_topic": "deadletter",
        "security_protocol": "PLAINTEXT", "sasl_mechanism": None, "sasl_username": None, "sasl_password": None,
        "wire": {"format": "single_object", "schema_registry_url": None, "schema_registry_auth": None}, "client": {},
    }
    saved["sidecar"]["redis"] = {"url": "redis://old:6379/0", "password": "**********", "key_prefix": "odl:trainer"}
    restored = TrainerConfig.from_json(saved)
    assert restored.model == TrainerConfig().model and restored.features == TrainerConfig().features
    assert restored.sidecar.kafka == KafkaConfig()  # not read back: the running config's is used


@pytest.mark.parametrize(
    ("setting", "value"),
    [("enable.auto.commit", True), ("enable.auto.offset.store", "true"), ("enable.partition.eof", False)],
)
def test_consumer_settings_the_sidecar_rests_on_cannot_be_changed(setting: str, value: object) -> None:
    """Offsets committed with checkpoints (a sample trained once) and end-of-partition events
    (sidecar.order, --exit-when-idle): an override would win over the sidecar's own, so it is refused
    in one line; repeating the pinned value is fine."""
    with pytest.raises(ConfigError) as info:
        sidecar({"consumer": {setting: value}})
    text = str(info.value)
    assert f"{setting} is {value!r}; it must stay" in text and "trainer.yaml" in text and "\n" not in text
    pinned = KafkaConfig.pinned_consumer_settings()[setting]
    kept = sidecar({"consumer": {setting: str(pinned).lower()}}).sidecar.kafka
    assert kept.client_settings("consumer")[setting] == str(pinned).lower()
