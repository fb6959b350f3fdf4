"""The connection model both deployables embed (common.connection): its defaults (the ``make up`` stack),
its rules, the secrets it never prints, and the two client builders against a real broker and Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr, ValidationError

from common.config import StrictConfig, load_config, validate_config
from common.connection import KafkaConnection, KafkaSecurity, RedisConnection, split_credentials
from common.defaults import LOCAL_KAFKA_BOOTSTRAP, LOCAL_REDIS_URL
from common.errors import ConfigError
from common.services import as_text

SECRET = "hunter2-" + uuid.uuid4().hex  # unique: found only where it leaked
SASL = {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "app", "sasl_password": SECRET}


class Deployable(StrictConfig):
    """A config that embeds the two sections, as the join's and the trainer's do."""

    kafka: KafkaConnection = KafkaConnection()
    redis: RedisConnection = RedisConnection()


def printed(model: object) -> str:
    assert isinstance(model, StrictConfig)
    return "\n".join((repr(model), str(model), model.model_dump_json(), str(model.model_dump())))


# -- defaults -------------------------------------------------------------------------------------------


def test_the_defaults_are_the_make_up_stack_read_when_the_config_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    kafka, store = KafkaConnection(), RedisConnection()
    assert (kafka.bootstrap_servers, store.url) == (LOCAL_KAFKA_BOOTSTRAP, LOCAL_REDIS_URL)
    assert kafka.client_settings() == {"bootstrap.servers": LOCAL_KAFKA_BOOTSTRAP, "security.protocol": "PLAINTEXT"}
    assert store.client_kwargs() == {}
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/3")
    assert KafkaConnection().bootstrap_servers == "broker:9092" and RedisConnection().url == "redis://cache:6379/3"


def test_the_models_are_frozen_and_refuse_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        KafkaConnection.model_validate({"bootstrap_server": "b:1"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        RedisConnection.model_validate({"tls": {"ca": "/ca.pem"}, "url": "rediss://h:1/0"})
    with pytest.raises(ValidationError, match="frozen"):
        KafkaConnection().bootstrap_servers = "x:1"  # type: ignore[misc]


# -- Kafka ----------------------------------------------------------------------------------------------


def test_client_settings_layer_the_callers_base_the_connection_and_the_roles_extras() -> None:
    kafka = KafkaConnection(bootstrap_servers="b:9092", client_id="odl-test",
                            security=KafkaSecurity.model_validate(SASL),
                            consumer={"fetch.wait.max.ms": 10}, producer={"linger.ms": 1})
    settings = kafka.client_settings("consumer", base={"fetch.wait.max.ms": 50, "group.id": "g",
                                                       "bootstrap.servers": "ignored:1"})
    assert settings == {"bootstrap.servers": "b:9092", "client.id": "odl-test", "group.id": "g",
                        "fetch.wait.max.ms": 10,  # the config's extra wins over the caller's own
                        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "app",
                        "sasl.password": SECRET, "ssl.endpoint.identification.algorithm": "https"}
    assert kafka.client_settings("producer")["linger.ms"] == 1 and "fetch.wait.max.ms" not in kafka.client_settings()


def test_tls_settings_name_their_files_and_the_hostname_check() -> None:
    security = KafkaSecurity(protocol="SSL", ssl_ca_location="/ca.pem", ssl_certificate_location="/c.pem",
                             ssl_key_location="/k.pem", ssl_key_password=SecretStr(SECRET), ssl_verify_hostname=False)
    assert security.librdkafka() == {
        "security.protocol": "SSL", "ssl.ca.location": "/ca.pem", "ssl.certificate.location": "/c.pem",
        "ssl.key.location": "/k.pem", "ssl.key.password": SECRET, "ssl.endpoint.identification.algorithm": "none"}


@pytest.mark.parametrize(
    ("security", "needle"),
    [
        ({**SASL, "sasl_password": None}, "protocol SASL_SSL needs sasl_username and sasl_password"),
        ({"sasl_username": "app", "sasl_password": SECRET}, "protocol PLAINTEXT does not use SASL"),
        ({"protocol": "SASL_PLAINTEXT", "sasl_username": "a", "sasl_password": SECRET, "ssl_key_password": SECRET},
         "protocol SASL_PLAINTEXT does not use TLS"),
        ({"protocol": "TLS"}, "kafka.security.protocol"),
        ({**SASL, "sasl_mechanism": "GSSAPI"}, "kafka.security.sasl_mechanism"),
    ],
)
def test_security_rules_are_one_line_naming_the_file_never_the_secret(
    security: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({"kafka": {"security": security}}, Deployable, source="app.yaml")
    text = str(info.value)
    assert needle in text and "app.yaml" in text and "\n" not in text
    assert SECRET not in text


def test_secrets_in_the_extra_client_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.consumer: .*sasl\.password: secrets go in kafka\.security"):
        validate_config({"kafka": {"consumer": {"sasl.password": SECRET}}}, Deployable, source="app.yaml")


# -- Redis ----------------------------------------------------------------------------------------------


def test_credentials_written_in_the_redis_url_are_moved_out_of_it() -> None:
    store = RedisConnection(url=f"rediss://app:{SECRET.replace('-', '%2D')}@10.0.0.5:6380/2")
    assert store.url == "rediss://10.0.0.5:6380/2" and store.username == "app"
    assert store.client_kwargs() == {"username": "app", "password": SECRET}
    assert SECRET not in printed(Deployable(redis=store))
    # a password given on its own wins over one in the url
    given = RedisConnection(url="redis://:other@h:1/0", password=SecretStr(SECRET))
    assert given.client_kwargs() == {"password": SECRET}
    assert split_credentials("redis://h:1/0") == ("redis://h:1/0", None, None)


def test_redis_tls_becomes_the_clients_ssl_arguments() -> None:
    store = RedisConnection.model_validate({"url": "rediss://h:6380/0", "tls": {
        "ca_file": "/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem", "key_password": SECRET}})
    assert store.client_kwargs() == {"ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem",
                                     "ssl_password": SECRET, "ssl_cert_reqs": "required", "ssl_check_hostname": True}
    assert SECRET not in printed(Deployable(redis=store))


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"url": "redis://h:1/0", "tls": {"ca_file": "/ca.pem"}, "password": SECRET}, "must use the rediss:// scheme"),
        ({"url": f"http://u:{SECRET}@h:1/0"}, "expected a url starting redis://, rediss://, unix:// (rediss: TLS), "
                                              "got 'http://h:1/0'"),
        ({"password": 12345}, "redis.password"),
    ],
)
def test_redis_rules_are_one_line_naming_the_file_never_the_secret(section: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({"redis": section}, Deployable, source="app.yaml")
    text = str(info.value)
    assert needle in text and "app.yaml" in text and "\n" not in text
    assert SECRET not in text and "12345" not in text


# -- from a file ----------------------------------------------------------------------------------------


def test_a_file_reads_its_secrets_from_the_environment_and_prints_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ODL_TEST_SECRET", SECRET)
    file = tmp_path / "app.yaml"
    file.write_text(
        "kafka:\n  bootstrap_servers: ${ODL_TEST_BROKERS:-b1:9093,b2:9093}\n"
        "  security: {protocol: SASL_SSL, sasl_username: app, sasl_password: ${ODL_TEST_SECRET}}\n"
        "redis:\n  url: redis://:${ODL_TEST_SECRET}@cache:6379/0\n"
    )
    config = load_config(file, Deployable)
    assert config.kafka.bootstrap_servers == "b1:9093,b2:9093"
    assert config.kafka.client_settings()["sasl.password"] == SECRET
    assert config.redis.url == "redis://cache:6379/0" and config.redis.client_kwargs() == {"password": SECRET}
    assert SECRET not in printed(config)
    monkeypatch.delenv("ODL_TEST_SECRET")
    with pytest.raises(ConfigError, match="environment variable ODL_TEST_SECRET is not set"):
        load_config(file, Deployable)


# -- the builders against the real services --------------------------------------------------------------


@pytest.mark.integration
def test_the_redis_builder_logs_in_as_the_configured_acl_user(redis_url: str) -> None:
    user = f"odl-test-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{SECRET}"], commands=["+@all"], keys=["*"])
    try:
        right = RedisConnection(url=redis_url, username=user, password=SecretStr(SECRET))
        client = right.client(socket_connect_timeout=3)
        assert as_text(client.acl_whoami()) == user
        assert SECRET not in repr(client)
        wrong = right.model_copy(update={"password": SecretStr("not-it")}).client(socket_connect_timeout=3)
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
        client.close()
        wrong.close()
    finally:
        admin.acl_deluser(user)
        admin.close()


@pytest.mark.integration
def test_the_kafka_builder_reaches_the_broker(kafka_bootstrap: str) -> None:
    settings = KafkaConnection(bootstrap_servers=kafka_bootstrap, client_id="odl-test").client_settings("admin")
    assert AdminClient(settings).list_topics(timeout=30).brokers
