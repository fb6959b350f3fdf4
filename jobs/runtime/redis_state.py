"""Join state and checkpoints of the embedded runtime in Redis (DESIGN §7).

Key layout, under ``base = "{key_prefix}:{group_id}"`` and per input partition number *p* (the three
event topics are co-partitioned, so *p* names one shard of request ids):

``{base}:{p}:epoch``
    fencing token, incremented by every process that takes *p* over; a checkpoint of *p* is only
    written while the token is still the one its writer took (WATCH + MULTI/EXEC), so a process that
    lost *p* in a rebalance can never overwrite its new owner's state.
``{base}:{p}:meta``
    hash: ``o:{topic}`` the next offset to consume, ``t:{topic}`` the largest event time seen, and
    ``wm`` the partition's watermark, all as of the checkpoint.
``{base}:{p}:s:{request_id}``
    one request's state: the join core's ``RequestState.to_bytes()``, with a TTL (the longest
    horizon plus window, plus a margin) so that nothing outlives the attribution horizon even if its
    clearing never comes. Timers are not stored: the core re-derives them from the state
    (``SampleJoin.pending_timers``) when a partition is loaded.

A checkpoint writes the dirty keys (set or deleted) and the meta of every owned partition in one
MULTI/EXEC transaction: the state and the offsets it reflects move together.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import redis

from jobs.errors import JobError

log = logging.getLogger(__name__)
T = TypeVar("T")


class PartitionFenced(JobError):
    """Another process took over a partition since we loaded it: our view of it is stale."""

    def __init__(self, partitions: Iterable[int]):
        self.partitions = sorted(partitions)
        super().__init__(f"partitions {self.partitions} were taken over by another process")


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
        url: str,
        key_prefix: str,
        group_id: str,
        ttl_ms: int,
        connect_timeout_s: float = 3.0,
        retry_for_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.base = f"{key_prefix}:{group_id}"
        self.ttl_ms = max(1, ttl_ms)
        self.retry_for_s = retry_for_s
        self._sleep = sleep
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=connect_timeout_s, socket_timeout=30.0, health_check_interval=10
        )
        self.epochs: dict[int, int] = {}  # partitions we own -> the fencing token we took

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
        snap = PartitionSnapshot(partition=p, epoch=epoch)
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

        def attempt() -> None:
            for _ in range(10):
                if self._try_checkpoint(partitions, writes, meta):
                    return
            raise JobError("checkpoint kept failing on concurrent changes to the fencing tokens")

        self._retrying("checkpoint", attempt)
        for record in writes.values():
            if record is None:
                stats.keys_deleted += 1
            else:
                stats.keys_written += 1
                stats.bytes_written += len(record)
        stats.seconds = time.monotonic() - started
        return stats

    def _try_checkpoint(
        self,
        partitions: list[int],
        writes: Mapping[tuple[int, str], bytes | None],
        meta: Mapping[int, Mapping[str, int]],
    ) -> bool:
        with self.client.pipeline(transaction=True) as pipe:
            epoch_keys = [self.epoch_key(p) for p in partitions]
            if epoch_keys:
                pipe.watch(*epoch_keys)
                current: list[Any] = pipe.mget(epoch_keys)  # type: ignore[assignment]
                fenced = [
                    p
                    for p, value in zip(partitions, current, strict=True)
                    if value is None or int(value) != self.epochs.get(p)
                ]
                if fenced:
                    pipe.reset()
                    raise PartitionFenced(fenced)
            pipe.multi()
            ttl = self.ttl_ms
            for (p, request_id), record in writes.items():
                key = self.state_prefix(p) + request_id
                if record is None:
                    pipe.delete(key)
                else:
                    pipe.set(key, record, px=ttl)
            for p, fields in meta.items():
                if fields:
                    pipe.hset(self.meta_key(p), mapping={k: str(v) for k, v in fields.items()})
            try:
                pipe.execute()
            except redis.WatchError:
                return False  # a token changed under us: look again which one
            return True

    def close(self) -> None:
        self.client.close()
