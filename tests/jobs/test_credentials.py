"""Credentials of the ``run`` deployable: only from config files or the environment, held as SecretStr,
revealed only to client construction, and never in logs, metrics, error messages or ``--help``."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from common.config import validate_config
from common.errors import ConfigError
from common.topics import create_topics
from devstack.processes import ManagedProcess, free_port
from devstack.stack import redis_binary
from jobs.config import KafkaConfig, RedisConfig, SampleJoinConfig
from jobs.runtime.embedded.metrics import RuntimeMetrics

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-" + uuid.uuid4().hex  # unique: found only where it leaked
SASL = {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "join",
        "sasl_password": SECRET, "ssl_ca_location": "/etc/ssl/ca.pem", "ssl_key_password": SECRET + "-key"}


def test_secrets_are_hidden_in_every_printed_form_and_revealed_to_clients_only() -> None:
    config = SampleJoinConfig.model_validate({
        "kafka": {"security": SASL},
        "redis": {"url": "rediss://127.0.0.1:6380/0", "password": SECRET,
                  "tls": {"ca_file": "/ca.pem", "key_password": SECRET}},
    })
    for shown in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert SECRET not in shown
    settings = config.kafka.client_settings("consumer")
    assert settings["sasl.password"] == SECRET and settings["ssl.key.password"] == SECRET + "-key"
    assert settings["security.protocol"] == "SASL_SSL" and settings["sasl.mechanism"] == "SCRAM-SHA-512"
    assert settings["ssl.ca.location"] == "/etc/ssl/ca.pem"
    kwargs = config.redis.client_kwargs()
    assert kwargs["password"] == SECRET and kwargs["ssl_password"] == SECRET and kwargs["ssl_ca_certs"] == "/ca.pem"


def test_client_settings_default_to_plaintext_and_carry_the_role_extras() -> None:
    kafka = KafkaConfig(bootstrap_servers="b:9092", consumer={"fetch.wait.max.ms": 10}, producer={"linger.ms": 1})
    assert kafka.client_settings("consumer") == {"bootstrap.servers": "b:9092", "security.protocol": "PLAINTEXT",
                                                 "fetch.wait.max.ms": 10}
    assert kafka.client_settings("producer")["linger.ms"] == 1
    assert "linger.ms" not in kafka.client_settings()


def test_a_password_in_the_redis_url_is_moved_out_of_it() -> None:
    config = RedisConfig(url=f"redis://app:{SECRET}@10.0.0.5:6379/2")
    assert config.url == "redis://10.0.0.5:6379/2"
    assert config.client_kwargs() == {"username": "app", "password": SECRET}
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"kafka": {"consumer": {"sasl.password": SECRET}}}, "secrets go in kafka.security"),
        ({"kafka": {"producer": {"ssl.key.password": SECRET}}}, "secrets go in kafka.security"),
        ({"kafka": {"security": {**SASL, "sasl_username": None}}}, "needs sasl_username and sasl_password"),
        ({"kafka": {"security": {"sasl_password": SECRET}}}, "does not use SASL"),
        ({"kafka": {"security": {"ssl_key_password": SECRET}}}, "does not use TLS"),
        ({"kafka": {"security": {**SASL, "protocol": "SASL_SSLX"}}}, "security.protocol"),
        ({"redis": {"password": 12345}}, "redis.password"),
        ({"redis": {"password": SECRET, "tls": {"ca_file": "/ca.pem"}}}, "rediss://"),
        ({"redis": {"url": f"redis://:{SECRET}@h:1/0", "bogus": SECRET}}, "redis.bogus"),
    ],
)
def test_config_errors_never_show_the_secret(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(data, SampleJoinConfig, source="job.yaml")
    text = str(info.value)
    assert needle in text and "job.yaml" in text
    assert SECRET not in text and "12345" not in text


def test_help_never_shows_credentials_from_the_environment() -> None:
    env = {**os.environ, "REDIS_URL": f"redis://:{SECRET}@127.0.0.1:1/0", "REDIS_PASSWORD": SECRET}
    for argv in ([], ["run"], ["replay"]):
        proc = subprocess.run([sys.executable, "-m", "jobs.sample_join", *argv, "--help"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0
        assert SECRET not in proc.stdout + proc.stderr
    assert "no credentials here" in subprocess.run(
        [sys.executable, "-m", "jobs.sample_join", "run", "--help"], cwd=ROOT, capture_output=True, text=True,
        timeout=60).stdout


def test_metrics_bind_loopback_by_default() -> None:
    metrics = RuntimeMetrics()
    port = metrics.serve(0)
    try:
        assert metrics._server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert response.status == 200
    finally:
        metrics._server.shutdown()
    assert SampleJoinConfig().metrics.host == "127.0.0.1"


# -- a run with a password in its config, against a redis-server that requires it -----------------


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[str]:
    """A redis-server on a free loopback port with ``requirepass SECRET``; yields its url (no password)."""
    port = free_port()
    log = tmp_path / "redis-auth.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--requirepass", SECRET], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = ManagedProcess("redis-auth", proc.pid, f"redis://127.0.0.1:{port}/0", str(log))
    client = redis.Redis(host="127.0.0.1", port=port, password=SECRET, socket_connect_timeout=1)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                proc.wait(0.05) if proc.poll() is None else pytest.fail(log.read_text())
        yield server.address
    finally:
        client.close()
        server.stop()
        proc.wait(10)


@pytest.mark.integration
def test_redis_client_kwargs_authenticate(redis_with_password: str) -> None:
    config = RedisConfig(url=redis_with_password, password=SECRET)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(config.url).ping()
    assert redis.Redis.from_url(config.url, **config.client_kwargs()).ping()
    assert config.client().ping()  # the builder the runtime and the trainer use


@pytest.mark.integration
@pytest.mark.parametrize("where", ["password field from the environment", "password inside the url"])
def test_a_run_with_a_password_writes_it_nowhere(
    redis_with_password: str, kafka_bootstrap: str, tmp_path: Path, where: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    create_topics(kafka_bootstrap, {f"{kind}.{tag}": (1, 0) for kind in "ifl"})
    redis_section: dict[str, object] = {"url": redis_with_password, "password": "${JOIN_REDIS_PASSWORD}"}
    if where == "password inside the url":
        redis_section = {"url": redis_with_password.replace("redis://", "redis://:${JOIN_REDIS_PASSWORD}@")}
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": f"g-{tag}",
                  "topics": {"impressions": f"i.{tag}", "feature_snapshots": f"f.{tag}", "labels": f"l.{tag}"}},
        "redis": {**redis_section, "key_prefix": f"cred-{tag}"},
        "metrics": {"port": 0},
        "local": {"exit_when_idle": "1s"},
    }))
    env = {**os.environ, "JOIN_REDIS_PASSWORD": SECRET, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.sample_join", "run", "--engine", "local", "--config", str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    written = proc.stdout + proc.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != config:
            written += path.read_text(errors="replace")
    assert SECRET not in written, f"the password leaked ({where})"
    print(f"\n[credentials] {where}: exit {proc.returncode}, {len(written)} chars written, password found 0 times")
    # the runtime's Redis client comes from the config's connection (common.connection): it logs in
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.integration
def test_the_local_services_bind_loopback(kafka_bootstrap: str, redis_url: str) -> None:
    if os.environ.get("REDIS_URL") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("external services: their binding is not ours")
    assert kafka_bootstrap.startswith("127.0.0.1:")
    assert redis.Redis.from_url(redis_url).config_get("bind")["bind"] == "127.0.0.1"
