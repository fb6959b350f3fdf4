"""The model registry in Redis: an index of the versions on disk, their status and the current pointer.

Disk is the source of truth (:mod:`trainer.sidecar.versions`): every change is written to the version's
record file and ``<model-dir>/current.json`` first, then to Redis, so :meth:`Registry.restore_from_disk`
can rebuild the index after a flush or a failover to an empty Redis (the sidecar does at every start;
`trainer registry rebuild` by hand). Keys under ``<prefix>`` (``<redis.key_prefix>:<task>``, also
written to ``<model-dir>/registry.json`` so that `trainer versions` / `rollback` find it from the model
directory alone):

    <prefix>:versions   hash  version -> JSON {version, status, metrics, reference_version,
                                               reference_metrics, reasons, samples_trained, offsets,
                                               created_ms, step, path, export (full | delta), bytes;
                                               a delta's base and chain: trainer.delta}
    <prefix>:current    string  the current (served) version
    <prefix>:notices    pub/sub channel: one JSON notice per change of the pointer
                        {event: "published" | "rolled_back" | "restored", current, previous, reason, time_ms}

Status changes, the pointer and its notice go in one MULTI/EXEC transaction. Every call is retried
with backoff while Redis is unreachable (up to the configured period).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from common.config import validate_config
from common.connection import RedisConnection
from common.services import check_redis_durability, one_line, wait_until_reachable
from trainer.sidecar.errors import RegistryError, SidecarError
from trainer.sidecar.retry import retrying
from trainer.sidecar.versions import VersionStore

log = logging.getLogger("trainer.sidecar")
T = TypeVar("T")

PUBLISHED, REFUSED, ROLLED_BACK = "published", "refused", "rolled_back"
UNJUDGED = "unjudged"  # on disk without a record: an export cut short before the gate judged it; never served
REGISTRY_FILE = "registry.json"
TRANSIENT = (redis.ConnectionError, redis.TimeoutError)


def write_registry_file(model_dir: Path, prefix: str) -> None:
    from common.output import write_atomic

    write_atomic(model_dir / REGISTRY_FILE, json.dumps({"redis_key_prefix": prefix}))


def read_registry_file(model_dir: Path) -> str:
    path = model_dir / REGISTRY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["redis_key_prefix"])
    except OSError as exc:
        raise SidecarError(
            f"{model_dir} is not a sidecar model directory (cannot read {REGISTRY_FILE}: {exc.strerror or exc})"
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise SidecarError(f"{path} is not a valid registry file: {exc}") from exc


@dataclass
class Restored:
    """What :meth:`Registry.restore_from_disk` changed."""

    reregistered: list[int] = field(default_factory=list)  # on disk with a record, missing from Redis
    updated: list[int] = field(default_factory=list)  # Redis held another record than the one on disk
    unjudged: list[int] = field(default_factory=list)  # on disk without a record: registered as unjudged
    recorded: list[int] = field(default_factory=list)  # known to Redis only: its record written to disk
    current: int | None = None
    current_restored: bool = False  # Redis's pointer was missing (or not the one on disk) and was set

    @property
    def lost(self) -> bool:
        """Redis had lost something the disk kept."""
        return bool(self.reregistered or self.updated or self.unjudged or self.current_restored)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Registry:
    def __init__(
        self,
        redis_at: RedisConnection | str,
        prefix: str,
        store: VersionStore,
        password: str | None = None,
        retry_for_s: float = 120.0,
        clock_ms: Callable[[], int] | None = None,
    ):
        """``redis_at``: the config's ``sidecar.redis`` (user, password, TLS), or a url (``password`` beside it)."""
        import time

        if not isinstance(redis_at, RedisConnection):
            redis_at = validate_config({"url": redis_at, "password": password}, RedisConnection, "the registry's url")
        self.prefix = prefix
        self.store = store
        self.where = redis_at.url  # (without the credentials: the connection holds them apart)
        self.client = redis_at.client(socket_timeout=5.0, socket_connect_timeout=3.0, decode_responses=True)
        self.retry_for_s = retry_for_s
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.versions_key = f"{prefix}:versions"
        self.current_key = f"{prefix}:current"
        self.channel = f"{prefix}:notices"

    def _authenticated(self, action: Callable[[], T]) -> T:
        """``action()``; refused credentials are one error at once, not an outage to wait out."""
        try:
            return action()
        except redis.AuthenticationError as exc:
            raise RegistryError(f"Redis at {self.where} refused the credentials: {one_line(exc)}") from exc

    def _call(self, what: str, action: Callable[[], Any]) -> Any:
        return retrying(lambda: self._authenticated(action), f"Redis registry ({what})", TRANSIENT, self.retry_for_s)

    def connect(self, wait_s: float) -> None:
        """First contact at start: wait up to ``wait_s`` for Redis (a progress line every few seconds,
        then one error line), then refuse a Redis that may evict keys (warn when it persists nothing)."""
        wait_until_reachable(
            lambda: self._authenticated(self.client.ping), f"Redis at {self.where}", wait_s, log, TRANSIENT
        )
        check_redis_durability(self.client, self.where, log)

    def close(self) -> None:
        self.client.close()

    # -- reading -----------------------------------------------------------------------------------

    def versions(self) -> list[dict[str, Any]]:
        raw = self._call("read versions", lambda: self.client.hgetall(self.versions_key))
        return sorted((json.loads(v) for v in raw.values()), key=lambda r: int(r["version"]))

    def version(self, number: int) -> dict[str, Any] | None:
        raw = self._call("read a version", lambda: self.client.hget(self.versions_key, str(number)))
        return json.loads(raw) if raw else None

    def current(self) -> int | None:
        raw = self._call("read the pointer", lambda: self.client.get(self.current_key))
        return int(raw) if raw else None

    def previous_good(self, before: int) -> dict[str, Any] | None:
        """The highest published version below ``before`` (where a rollback of ``before`` goes)."""
        good = [r for r in self.versions() if r["status"] == PUBLISHED and int(r["version"]) < before]
        return good[-1] if good else None

    # -- writing: the record on disk first, then Redis -----------------------------------------------

    def _stamped(self, record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "created_ms": record.get("created_ms") or self.clock_ms()}

    def add(self, record: dict[str, Any]) -> None:
        """Register a version (a refused one, or a new status or field of a known one) without moving the
        pointer; ``created_ms`` is set here."""
        record = self._stamped(record)
        self.store.write_record(record)
        self._call(
            "add a version", lambda: self.client.hset(self.versions_key, str(record["version"]), json.dumps(record))
        )

    def publish(self, record: dict[str, Any], reason: str = "passed the validation gate") -> dict[str, Any]:
        """Register ``record`` (status published) and point at it, in one transaction; the notice."""
        if record["status"] != PUBLISHED:
            raise RegistryError(f"version {record['version']} has status {record['status']}, expected {PUBLISHED}")
        record = self._stamped(record)
        return self._move(int(record["version"]), "published", reason, {int(record["version"]): record})

    def rollback(self, to: int | None = None, reason: str = "by hand") -> dict[str, Any]:
        """Move the pointer back (to ``to``, or to the last good version before the current one); the
        version left is marked rolled_back. Returns the notice."""
        current = self.current()
        if current is None:
            raise RegistryError("no current version to roll back from")
        if to is None:
            target = self.previous_good(current)
            if target is None:
                raise RegistryError(f"no published version before the current version {current}")
        else:
            target = self.version(to)
            if target is None:
                raise RegistryError(f"version {to} is not in the registry")
            if target["status"] in (REFUSED, UNJUDGED):
                raise RegistryError(f"version {to} is {target['status']}, expected one the validation gate passed")
            if to == current:
                raise RegistryError(f"version {to} is already current")
        number = int(target["version"])
        if not self.store.path(number).is_dir():
            raise RegistryError(f"version {number} is no longer on disk ({self.store.path(number)})")
        left = self.version(current)
        updates = {}
        if left is not None:
            updates[current] = {**left, "status": ROLLED_BACK, "rolled_back_reason": reason}
        if target["status"] != PUBLISHED:
            updates[number] = {**target, "status": PUBLISHED}
        return self._move(number, "rolled_back", reason, updates)

    def _move(self, version: int, event: str, reason: str, updates: dict[int, dict[str, Any]]) -> dict[str, Any]:
        # Disk first (the records before the pointer: it never names an unrecorded version), so that a
        # Redis that is down now gets all of it at the next start.
        for record in updates.values():
            self.store.write_record(record)
        self.store.write_current(version)
        notice = {
            "event": event,
            "current": version,
            "previous": self.current(),
            "reason": reason,
            "time_ms": self.clock_ms(),
        }

        def transaction() -> None:
            pipe = self.client.pipeline(transaction=True)
            for number, record in updates.items():
                pipe.hset(self.versions_key, str(number), json.dumps(record))
            pipe.set(self.current_key, str(version))
            pipe.publish(self.channel, json.dumps(notice))
            pipe.execute()

        self._call(f"move the pointer to {version}", transaction)
        return notice

    # -- recovery ----------------------------------------------------------------------------------

    def restore_from_disk(self) -> Restored:
        """Make the registry agree with the disk, deleting nothing: versions on disk that Redis lacks (or
        holds another record of) are registered from their records; one without a record as unjudged;
        the pointer, when Redis lacks it (or names another version), is set from ``current.json``
        (notice ``restored``). A version known to Redis only from before records existed gets its
        record written to disk. One log line says what changed."""
        out = Restored()
        registered = {int(r["version"]): r for r in self.versions()}
        on_disk = self.store.on_disk()
        changes: dict[str | bytes, bytes | float | int | str] = {}
        for number in on_disk:
            known = registered.get(number)
            try:
                record = self.store.read_record(number)
            except RegistryError as exc:
                log.warning("unreadable version record, rewritten", extra={"version": number, "error": str(exc)})
                record = None
            if record is None and known is not None:
                self.store.write_record(known)
                out.recorded.append(number)
                continue
            if record is None:
                record = self._unjudged(number)
                self.store.write_record(record)
                out.unjudged.append(number)
            elif known is None:
                out.reregistered.append(number)
            elif json.dumps(known, sort_keys=True) != json.dumps(record, sort_keys=True):  # NaN != NaN as objects
                out.updated.append(number)
            else:
                continue
            changes[str(number)] = json.dumps(record)
        if changes:
            self._call("re-register versions", lambda: self.client.hset(self.versions_key, mapping=changes))
        out.current = self._restore_pointer(set(on_disk), out)
        if out.lost:
            log.warning("registry restored from disk (Redis had lost it)", extra={"restored": out.to_json()})
        elif out.recorded:
            log.info("version records written from the registry", extra={"versions": out.recorded})
        return out

    def _restore_pointer(self, on_disk: set[int], out: Restored) -> int | None:
        kept = self.store.read_current()
        if kept is not None and kept not in on_disk:
            log.warning("current.json names a version that is not on disk; ignored", extra={"version": kept})
            kept = None
        pointer = self.current()
        if kept is None:
            if pointer is not None and pointer in on_disk:
                self.store.write_current(pointer)  # a model directory from before current.json
            return pointer
        if kept != pointer:
            self._move(kept, "restored", "restored from disk", {})
            out.current_restored = True
        return kept

    def _unjudged(self, number: int) -> dict[str, Any]:
        path = self.store.path(number)
        return {
            "version": number,
            "status": UNJUDGED,
            "metrics": {},
            "reference_version": None,
            "reference_metrics": None,
            "reasons": ["no record in its directory: the export was cut short before the gate judged it"],
            "samples_trained": None,
            "offsets": {},
            "step": None,
            "path": str(path),
            "created_ms": int(path.stat().st_mtime * 1000),
        }
