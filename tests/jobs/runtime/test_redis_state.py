"""Checkpoints of the embedded runtime in a real Redis: atomic writes, loads, fencing, TTLs."""

from __future__ import annotations

import uuid

import pytest
import redis

from jobs.runtime.embedded.redis_state import PartitionFenced, RedisState

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> str:
    return f"test-state-{uuid.uuid4().hex[:8]}"


def test_checkpoint_then_take_round_trips(redis_url: str, prefix: str) -> None:
    a = RedisState(redis_url, prefix, "g", ttl_ms=60_000)
    snaps = a.take([0, 1])  # fresh partitions load empty
    assert not snaps[0].records and not snaps[0].offsets and snaps[0].watermark is None
    a.checkpoint(
        {(0, "r1"): b"state-1", (0, "r:2*"): b"state-2", (1, "r3"): b"state-3"},
        {
            0: {"o:events.impressions": 10, "t:events.impressions": 1234, "wm": 1000, "end": 0},
            1: {"o:events.impressions": 7, "wm": 5, "end": 1},
        },
    )
    b = RedisState(redis_url, prefix, "g", ttl_ms=60_000)
    got = b.take([0, 1])
    assert got[0].records == {"r1": b"state-1", "r:2*": b"state-2"}
    assert got[1].records == {"r3": b"state-3"}
    assert got[0].offsets == {"events.impressions": 10} and got[0].max_ts == {"events.impressions": 1234}
    assert got[0].watermark == 1000 and not got[0].ended and got[1].ended
    # deletes
    b.checkpoint({(0, "r1"): None}, {0: {"o:events.impressions": 11}})
    again = RedisState(redis_url, prefix, "g", ttl_ms=60_000).take([0])[0]
    assert again.records == {"r:2*": b"state-2"} and again.offsets == {"events.impressions": 11}
    assert RedisState(redis_url, prefix, "other-group", ttl_ms=1).take([0])[0].records == {}


def test_state_keys_expire_after_the_ttl(redis_url: str, prefix: str) -> None:
    s = RedisState(redis_url, prefix, "g", ttl_ms=90_000)
    s.take([3])
    s.checkpoint({(3, "r"): b"x"}, {3: {"wm": 1}})
    ttl = redis.Redis.from_url(redis_url).pttl(f"{prefix}:g:3:s:r")
    assert 80_000 < ttl <= 90_000


def test_a_process_that_lost_a_partition_cannot_overwrite_it(redis_url: str, prefix: str) -> None:
    old = RedisState(redis_url, prefix, "g", ttl_ms=60_000)
    old.take([0, 1])
    new = RedisState(redis_url, prefix, "g", ttl_ms=60_000)
    new.take([1])  # a rebalance gave partition 1 to another process
    new.checkpoint({(1, "r"): b"new"}, {1: {"o:t": 5}})
    with pytest.raises(PartitionFenced) as info:
        old.checkpoint({(0, "a"): b"old", (1, "r"): b"stale"}, {0: {"o:t": 1}, 1: {"o:t": 3}})
    assert info.value.partitions == [1]
    check = RedisState(redis_url, prefix, "g", ttl_ms=60_000)
    snaps = check.read_meta([0, 1])
    assert snaps[1] == {"o:t": "5"} and snaps[0] == {}  # nothing of the fenced checkpoint was written
    client = redis.Redis.from_url(redis_url)
    assert client.get(f"{prefix}:g:1:s:r") == b"new" and client.get(f"{prefix}:g:0:s:a") is None


def test_unreachable_redis_fails_fast(prefix: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = RedisState(f"redis://127.0.0.1:{port}/0", prefix, "g", ttl_ms=1, retry_for_s=0.3)
    with pytest.raises(redis.ConnectionError):
        s.ping()
    from jobs.errors import JobError

    with pytest.raises(JobError, match="unreachable"):
        s.take([0])
