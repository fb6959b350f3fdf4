"""The start-up checks both deployables share (common.services), against a real redis-server.

The wait runs on an injected clock and sleep, so a 10 s wait takes no time; the durability check
runs on a private server whose settings each test changes with CONFIG SET.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.errors import ServiceError
from common.services import PROGRESS_EVERY_S, check_redis_durability, one_line, wait_until_reachable
from devstack.processes import free_port
from devstack.stack import start_redis

pytestmark = pytest.mark.integration
log = logging.getLogger("tests.services")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    """A redis-server of this test's own (in memory, no save points, no eviction)."""
    server = start_redis(free_port(), tmp_path / "redis.log")
    client = redis.Redis.from_url(server.address)
    try:
        yield client
    finally:
        client.close()
        server.stop()


class FakeTime:
    """A clock that only the injected sleep moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _closed_port_ping() -> None:
    """A ping refused at once (no client-side retries, which would sleep for real)."""
    redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)).ping()


def test_the_wait_returns_once_the_probe_answers_with_a_progress_line_every_few_seconds(
    private_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    fake, failures = FakeTime(), 9
    calls = 0

    def probe() -> bool:
        nonlocal calls
        calls += 1
        if calls <= failures:
            _closed_port_ping()
        return bool(private_redis.ping())

    caplog.set_level(logging.WARNING, logger=log.name)
    assert wait_until_reachable(probe, "Redis", 30.0, log, (redis.ConnectionError,), fake.clock, fake.sleep) is True
    assert calls == failures + 1
    assert fake.slept[:5] == [0.1, 0.2, 0.4, 0.8, 1.6] and set(fake.slept[5:]) == {2.0}  # backs off to 2 s
    # failures at 0, 0.1, 0.3, 0.7, 1.5, 3.1, 5.1, 7.1 and 9.1 s: a line at the first, then after 5 s
    assert [round(t, 1) for t in _progress(caplog)] == [0.0, 5.1]
    assert PROGRESS_EVERY_S == 5.0
    assert all("Connection refused" in r.__dict__["error"] for r in caplog.records)


def test_the_wait_gives_up_in_one_line_within_the_wait(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    caplog.set_level(logging.WARNING, logger=log.name)
    with pytest.raises(ServiceError) as info:
        wait_until_reachable(_closed_port_ping, "Redis at the closed port", 10.0, log, (redis.ConnectionError,),
                             fake.clock, fake.sleep)
    text = str(info.value)
    assert text.startswith("Redis at the closed port unreachable after 10 s: Error 111 connecting to 127.0.0.1:")
    assert "\n" not in text
    assert fake.now - 1000.0 <= 10.0
    assert len(_progress(caplog)) == 2  # at 0 s and after 5 s


def test_the_wait_does_not_retry_what_waiting_cannot_fix() -> None:
    fake = FakeTime()

    def probe() -> None:
        raise redis.AuthenticationError("invalid username-password pair")

    with pytest.raises(redis.AuthenticationError):
        wait_until_reachable(probe, "Redis", 10.0, log, (redis.TimeoutError,), fake.clock, fake.sleep)
    assert fake.slept == []


def test_an_evicting_redis_is_refused(private_redis: redis.Redis) -> None:
    private_redis.config_set("maxmemory", "64mb")
    private_redis.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(ServiceError) as info:
        check_redis_durability(private_redis, "redis://here/0", log)
    assert str(info.value) == (
        "Redis at redis://here/0 may evict keys (maxmemory 67108864, maxmemory-policy allkeys-lru): checkpoints "
        "and the model registry would vanish under memory pressure; set maxmemory-policy noeviction"
    )


@pytest.mark.parametrize(
    ("settings", "warned"),
    [
        ({}, True),  # the private server as started: in memory only
        ({"appendonly": "yes"}, False),
        ({"save": "3600 1"}, False),
        ({"maxmemory": "64mb"}, True),  # a limit without eviction (noeviction) fails writes, loses nothing
        ({"maxmemory-policy": "allkeys-lru", "appendonly": "yes"}, False),  # no limit: nothing is evicted
    ],
)
def test_a_redis_that_persists_nothing_is_warned_about(
    private_redis: redis.Redis, caplog: pytest.LogCaptureFixture, settings: dict[str, str], warned: bool
) -> None:
    for key, value in settings.items():
        private_redis.config_set(key, value)
    if settings.get("appendonly") == "yes":
        _initial_aof_written(private_redis)
    caplog.set_level(logging.WARNING, logger=log.name)
    read = check_redis_durability(private_redis, "redis://here/0", log)
    assert read["appendonly"] == settings.get("appendonly", "no")
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == (["Redis at redis://here/0 persists nothing (appendonly no, no save points): a restart of "
                         "Redis loses every checkpoint and registry entry; enable appendonly (appendfsync everysec)"]
                        if warned else [])


def test_a_redis_without_config_access_is_logged_as_unchecked(
    private_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Managed Redis services often refuse CONFIG: then nothing can be checked, and it says so."""
    private_redis.acl_setuser("app", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-config"])
    port = private_redis.connection_pool.connection_kwargs["port"]
    limited = redis.Redis(port=port, username="app", password="secret")
    caplog.set_level(logging.INFO, logger=log.name)
    assert check_redis_durability(limited, "redis://here/0", log) == {}
    assert [r.getMessage() for r in caplog.records] == [
        "cannot read the config of Redis at redis://here/0 (CONFIG disabled?): eviction and persistence not checked"
    ]
    limited.close()


def test_one_line_collapses_whitespace_or_names_the_type() -> None:
    assert one_line(ValueError("a\n  b\tc ")) == "a b c"
    assert one_line(TimeoutError()) == "TimeoutError"


def _initial_aof_written(client: redis.Redis) -> None:
    """Until its first append-only file is written, Redis ignores SIGTERM ("can't exit"): wait for it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if info["aof_enabled"] and not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"Redis did not write its first append-only file in 30 s: {client.info('persistence')}")


def _progress(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The seconds waited, as each progress line says."""
    return [float(r.args[1]) for r in caplog.records if r.getMessage().startswith("waiting for ")]  # type: ignore[index]


def test_one_line_reads_a_kafka_error_by_its_own_text() -> None:
    from confluent_kafka import KafkaError, KafkaException

    exc = KafkaException(KafkaError(KafkaError._TRANSPORT, "broker\n  went away"))
    assert one_line(exc) == "broker went away"
    assert one_line(ValueError("two\nlines")) == "two lines" and one_line(RuntimeError()) == "RuntimeError"
