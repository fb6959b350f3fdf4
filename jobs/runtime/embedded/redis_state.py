"""Join state and checkpoints of the embedded runtime in Redis (docs/guarantees.md).

Key layout, under ``base = "{key_prefix}:{group_id}"`` and per input partition number *p* (the three
event topics are co-partitioned, so *p* names one shard of request ids):

``{base}:{p}:epoch``
    fencing token, incremented by every process that takes *p* over; a checkpoint of *p* is only
    written while the token is still the one its writer took (WATCH + MULTI/EXEC), so a process that
    lost *p* in a rebalance can never overwrite its new owner's state.
``{base}:{p}:meta``
    hash: ``o:{topic}`` the next offset to consume, ``t:{topic}`` the largest event time seen, and
    ``wm`` the partition's watermark, all as of the checkpoint. It has no TTL: its absence means *p*
    was never checkpointed, or its checkpoint was lost (told apart by the group's committed offsets).
``{base}:{p}:s:{request_id}``
    one request's state in its byte form (``jobs.runtime.state_bytes``), with a TTL (the longest
    horizon plus window, plus a margin) so that nothing outlives the attribution horizon even if its
    clearing never comes. Timers are not stored: the core re-derives them from the state
    (``SampleJoin.pending_timers``) when a partition is loaded.

A checkpoint writes the dirty keys (set or deleted) and the meta of every owned partition in one
MULTI/EXEC transaction: the state and the offsets it reflects move together.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.connection import RedisConnection
from jobs.errors import JobError

log = logging.getLogger(__name__)
T = TypeVar("T")


class PartitionFenced(JobError):
    """Another process took over a partition since we loaded it: our view of it is stale."""

    def __init__(self, partitions: Iterable[int]):
        self.partitions = sorted(partitions)
        super().__init__(f"partitions {self.partitions} were taken over by another process")


# One checkpoint, atomically (a script runs alone): check every partition's fencing token, then
# write the state keys (with their TTL), delete the cleared ones and set each partition's meta.
# Returns the 1-based indexes of fenced partitions (and writes nothing), or an empty list.
CHECKPOINT_LUA = """
local np, ns, nd, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local fenced = {}
for i = 1, np do
  if redis.call('GET', KEYS[i]) ~= ARGV[4 + i] then fenced[#fenced + 1] = i end
end
if #fenced > 0 then return fenced end
local a = 4 + np
local k = 2 * np
for i = 1, ns do redis.call('SET', KEYS[k + i], ARGV[a + i], 'PX', ttl) end
a = a + ns
k = k + ns
local i = 1
while i <= nd do
  local j = math.min(nd, i + 999)
  redis.call('DEL', unpack(KEYS, k + i, k + j))
  i = j + 1
end
for p = 1, np do
  local m = tonumber(ARGV[a + 1])
  a = a + 1
  if m > 0 then redis.call('HSET', KEYS[np + p], unpack(ARGV, a + 1, a + 2 * m)) end
  a = a + 2 * m
end
return {}
"""


@dataclass
class PartitionSnapshot:
    """What a checkpoint holds for one partition number."""

    partition: int
    epoch: int
    offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset
    max_ts: dict[str, int] = field(default_factory=dict)  # topic -> largest event time seen
    watermark: int | None = None
    ended: bool = False  # bounded mode resolved everything at these offsets (watermark to +inf)
    records: dict[str, bytes] = field(default_factory=dict)  # request_id -> state bytes
    checkpointed: bool = False  # a checkpoint of the partition was found (its meta), else a fresh start or a lost one


@dataclass
class CheckpointStats:
    keys_written: int = 0
    keys_deleted: int = 0
    bytes_written: int = 0
    seconds: float = 0.0


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisState:
    """Reads and writes the runtime's checkpoints; retries with backoff when Redis drops out."""

    def __init__(
        self,
        redis_at: RedisConnection | str,
        key_prefix: str,
        group_id: str,
        ttl_ms: int,
        connect_timeout_s: float = 3.0,
        retry_for_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``redis_at``: the config's ``redis`` (user, password, TLS), or a url."""
        if not isinstance(redis_at, RedisConnection):
            redis_at = RedisConnection(url=redis_at)
        self.url = redis_at.url  # (without the credentials: the connection holds them apart)
        self.base = f"{key_prefix}:{group_id}"
        self.ttl_ms = max(1, ttl_ms)
        self.retry_for_s = retry_for_s
        self._sleep = sleep
        # No client-side retries: ours (_retrying) log, back off and give up after retry_for_s, and
        # the start-up check must fail fast.
        self.client = redis_at.client(
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=30.0,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 0),
        )
        self.epochs: dict[int, int] = {}  # partitions we own -> the fencing token we took
        self._sha = hashlib.sha1(CHECKPOINT_LUA.encode()).hexdigest()  # loaded on first NOSCRIPT

    # -- keys -------------------------------------------------------------------------------------

    def epoch_key(self, p: int) -> str:
        return f"{self.base}:{p}:epoch"

    def meta_key(self, p: int) -> str:
        return f"{self.base}:{p}:meta"

    def state_prefix(self, p: int) -> str:
        return f"{self.base}:{p}:s:"

    # -- plumbing ---------------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise redis.ConnectionError (etc.) at once when Redis cannot be reached."""
        self.client.ping()

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        delay = 0.1
        deadline = time.monotonic() + self.retry_for_s
        while True:
            try:
                return action()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise JobError(
                        f"Redis at {self.url} unreachable for {self.retry_for_s:.0f} s during {what}: {exc}"
                    ) from exc
                log.warning(
                    "redis unavailable, retrying",
                    extra={"what": what, "error": str(exc), "retry_in_s": round(delay, 2)},
                )
                self._sleep(delay)
                delay = min(5.0, delay * 2) * (0.8 + 0.4 * random.random())

    # -- load -------------------------------------------------------------------------------------

    def take(self, partitions: Iterable[int]) -> dict[int, PartitionSnapshot]:
        """Take ownership of ``partitions`` (bump their fencing tokens) and read their checkpoints."""
        result: dict[int, PartitionSnapshot] = {}
        for p in partitions:
            result[p] = self._retrying(f"loading partition {p}", partial(self._take_one, p))
        return result

    def _take_one(self, p: int) -> PartitionSnapshot:
        epoch = int(self.client.incr(self.epoch_key(p)))
        meta = {k.decode(): v.decode() for k, v in self.client.hgetall(self.meta_key(p)).items()}
        snap = PartitionSnapshot(partition=p, epoch=epoch, checkpointed=bool(meta))
        for k, v in meta.items():
            if k.startswith("o:"):
                snap.offsets[k[2:]] = int(v)
            elif k.startswith("t:"):
                snap.max_ts[k[2:]] = int(v)
            elif k == "wm":
                snap.watermark = int(v)
            elif k == "end":
                snap.ended = v == "1"
        prefix = self.state_prefix(p)
        cut = len(prefix.encode())
        keys: list[bytes] = []
        for key in self.client.scan_iter(match=_escape_glob(prefix) + "*", count=2000):
            keys.append(key)
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            for key, value in zip(chunk, self.client.mget(chunk), strict=True):
                if value is not None:  # expired in between
                    snap.records[key[cut:].decode()] = value
        self.epochs[p] = epoch
        return snap

    def read_meta(self, partitions: Iterable[int]) -> dict[int, dict[str, str]]:
        """The checkpointed meta fields of partitions (``o:{topic}``, ``t:{topic}``, ``wm``, ``end``),
        without taking them over."""

        def read() -> dict[int, dict[str, str]]:
            ps = list(partitions)
            with self.client.pipeline(transaction=False) as pipe:
                for p in ps:
                    pipe.hgetall(self.meta_key(p))
                metas = pipe.execute()
            return {p: {k.decode(): v.decode() for k, v in meta.items()} for p, meta in zip(ps, metas, strict=True)}

        return self._retrying("reading partition meta", read)

    def release(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.epochs.pop(p, None)

    # -- checkpoint -------------------------------------------------------------------------------

    def checkpoint(
        self,
        writes: Mapping[tuple[int, str], bytes | None],
        meta: Mapping[int, Mapping[str, int]],
    ) -> CheckpointStats:
        """Atomically write ``writes`` ((p, request_id) -> record, None deletes) and each partition's meta.

        Raises :class:`PartitionFenced` (writing nothing) when another process took over any of the
        partitions involved since we did.
        """
        started = time.monotonic()
        stats = CheckpointStats()
        partitions = sorted({p for p, _ in writes} | set(meta))
        missing = [p for p in partitions if p not in self.epochs]
        if missing:
            raise PartitionFenced(missing)
        # KEYS: epoch keys, meta keys, keys to set, keys to delete. ARGV: counts, ttl, expected epochs,
        # values to set, then per partition its number of meta fields and the field/value pairs.
        set_keys: list[str] = []
        values: list[bytes] = []
        del_keys: list[str] = []
        for (p, request_id), record in writes.items():
            key = self.state_prefix(p) + request_id
            if record is None:
                del_keys.append(key)
            else:
                set_keys.append(key)
                values.append(record)
                stats.bytes_written += len(record)
        keys = [self.epoch_key(p) for p in partitions] + [self.meta_key(p) for p in partitions]
        keys += set_keys
        keys += del_keys
        args: list[Any] = [len(partitions), len(set_keys), len(del_keys), self.ttl_ms]
        args += [self.epochs[p] for p in partitions]
        for p in partitions:
            fields = meta.get(p, {})
            args.append(len(fields))
            for k, v in fields.items():
                args.append(k)
                args.append(v)
        # the meta went last in ARGV: the values are spliced in before it, as bytes, at pack time
        head = [str(a).encode() for a in args[: 4 + len(partitions)]]
        tail = [str(a).encode() for a in args[4 + len(partitions) :]]
        packed = [k.encode() for k in keys]
        fenced = self._retrying("checkpoint", lambda: self._run_script(packed, head + values + tail))
        if fenced:
            raise PartitionFenced(partitions[int(i) - 1] for i in fenced)
        stats.keys_written = len(set_keys)
        stats.keys_deleted = len(del_keys)
        stats.seconds = time.monotonic() - started
        return stats

    def _run_script(self, keys: list[bytes], args: list[bytes]) -> Any:
        """EVALSHA of the checkpoint script, packed here: redis-py's generic command packing costs
        several microseconds per argument, and a checkpoint has two per dirty key."""
        pool = self.client.connection_pool
        for attempt in range(2):
            payload = _resp([b"EVALSHA", self._sha.encode(), str(len(keys)).encode(), *keys, *args])
            conn = pool.get_connection()
            try:
                conn.send_packed_command([payload])
                return self.client.parse_response(conn, "EVALSHA")
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self._sha = str(self.client.script_load(CHECKPOINT_LUA))
            except (redis.ConnectionError, redis.TimeoutError):
                conn.disconnect()
                raise
            finally:
                pool.release(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.client.close()


def _resp(parts: list[bytes]) -> bytes:
    """One Redis command in RESP: ``*N`` then ``$len`` + bytes for each part."""
    out = [b"*%d\r\n" % len(parts)]
    append = out.append
    for part in parts:
        append(b"$%d\r\n" % len(part))
        append(part)
        append(b"\r\n")
    return b"".join(out)
