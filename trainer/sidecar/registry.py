"""The model registry in Redis: every version, its status and metrics, and the current pointer.

Keys under ``<prefix>`` (``<redis.key_prefix>:<task>``, also written to ``<model-dir>/registry.json``
so that `trainer versions` / `rollback` find it from the model directory alone):

    <prefix>:versions   hash  version -> JSON {version, status, metrics, reference_metrics, reasons,
                                               samples_trained, offsets, created_ms, step, path}
    <prefix>:current    string  the current (served) version
    <prefix>:notices    pub/sub channel: one JSON notice per change of the pointer
                        {event: "published" | "rolled_back", current, previous, reason, time_ms}

Status changes, the pointer and its notice go in one MULTI/EXEC transaction. Every call is retried
with backoff while Redis is unreachable (up to the configured period).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from trainer.sidecar.errors import RegistryError, SidecarError
from trainer.sidecar.retry import retrying

PUBLISHED, REFUSED, ROLLED_BACK = "published", "refused", "rolled_back"
REGISTRY_FILE = "registry.json"
TRANSIENT = (redis.ConnectionError, redis.TimeoutError)


def write_registry_file(model_dir: Path, prefix: str) -> None:
    from common.output import AtomicFile

    with AtomicFile(model_dir / REGISTRY_FILE) as out:
        out.write(json.dumps({"redis_key_prefix": prefix}).encode())
        out.commit()


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


class Registry:
    def __init__(
        self,
        url: str,
        prefix: str,
        password: str | None = None,
        retry_for_s: float = 120.0,
        clock_ms: Callable[[], int] | None = None,
    ):
        import time

        self.prefix = prefix
        self.client = redis.Redis.from_url(
            url, password=password, socket_timeout=5.0, socket_connect_timeout=3.0, decode_responses=True
        )
        self.retry_for_s = retry_for_s
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.versions_key = f"{prefix}:versions"
        self.current_key = f"{prefix}:current"
        self.channel = f"{prefix}:notices"

    def _call(self, what: str, action: Callable[[], Any]) -> Any:
        return retrying(action, f"Redis registry ({what})", TRANSIENT, self.retry_for_s)

    def ping(self) -> None:
        self._call("ping", self.client.ping)

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

    # -- writing -----------------------------------------------------------------------------------

    def add(self, record: dict[str, Any]) -> None:
        """Register a version (refused ones too); ``created_ms`` is set here."""
        record = {**record, "created_ms": record.get("created_ms") or self.clock_ms()}
        self._call(
            "add a version", lambda: self.client.hset(self.versions_key, str(record["version"]), json.dumps(record))
        )

    def publish(self, version: int, reason: str = "passed the validation gate") -> dict[str, Any]:
        """Point at ``version`` (already added, status published) and announce it."""
        return self._move(version, "published", reason, {})

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
            if target["status"] == REFUSED:
                raise RegistryError(f"version {to} was refused by the validation gate")
            if to == current:
                raise RegistryError(f"version {to} is already current")
        left = self.version(current)
        updates = {}
        if left is not None:
            updates[current] = {**left, "status": ROLLED_BACK, "rolled_back_reason": reason}
        if target["status"] != PUBLISHED:
            updates[int(target["version"])] = {**target, "status": PUBLISHED}
        return self._move(int(target["version"]), "rolled_back", reason, updates)

    def _move(self, version: int, event: str, reason: str, updates: dict[int, dict[str, Any]]) -> dict[str, Any]:
        previous = self.current()
        notice = {
            "event": event,
            "current": version,
            "previous": previous,
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
