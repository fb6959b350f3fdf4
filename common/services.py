"""Start-up checks both deployables run on the services they depend on (docs/guarantees.md).

- :func:`wait_until_reachable`: a bounded, visible wait for a service at start (one progress line every
  few seconds), then one :class:`~common.errors.ServiceError` line. The join and the trainer use the same
  wait, so an unreachable Redis or Kafka behaves alike in both.
- :func:`check_redis_durability`: a Redis that would evict keys under memory pressure loses checkpoints
  and the model registry without a word, so it is refused; one that does not persist is warned about.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from common.errors import ServiceError

START_WAIT_S = 30.0  # the default start-up wait of both deployables
PROGRESS_EVERY_S = 5.0


def one_line(exc: BaseException) -> str:
    """An exception as one line: its text with whitespace collapsed, or its type's name. A Kafka
    client's exception reads as its error's own text (``KafkaError.str()``), not the error's repr."""
    first: Any = exc.args[0] if exc.args else None
    text = first.str() if callable(getattr(first, "str", None)) else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def wait_until_reachable(
    probe: Callable[[], Any],
    what: str,
    wait_s: float,
    log: logging.Logger,
    transient: tuple[type[BaseException], ...] = (Exception,),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """``probe()``'s result once it stops raising ``transient``; a warning line every few seconds while
    it fails; :class:`ServiceError` naming ``what`` and the last error after ``wait_s``."""
    started = clock()
    next_progress = started
    delay = 0.1
    while True:
        try:
            return probe()
        except transient as exc:
            now = clock()
            waited = now - started
            if waited >= wait_s:
                raise ServiceError(f"{what} unreachable after {wait_s:g} s: {one_line(exc)}") from exc
            if now >= next_progress:
                log.warning(
                    "waiting for %s (%.0f s of %g s)", what, waited, wait_s, extra={"error": one_line(exc)}
                )
                next_progress = now + PROGRESS_EVERY_S
            sleep(min(delay, wait_s - waited))  # the last try lands on the deadline, not before it
            delay = min(delay * 2.0, 2.0)


def check_redis_durability(client: Any, where: str, log: logging.Logger) -> dict[str, str]:
    """Refuse a Redis that evicts keys (``maxmemory`` set with a policy other than ``noeviction``: a
    checkpoint or registry entry could vanish under memory pressure); warn when it persists nothing
    (no AOF, no RDB snapshots: a restart of Redis loses every checkpoint and the registry). Managed
    Redis services often disable ``CONFIG``: then both are logged as unchecked. Returns what was read."""
    import redis

    try:
        config = {**client.config_get("maxmemory"), **client.config_get("maxmemory-policy")}
        config.update(client.config_get("save"))
        config.update(client.config_get("appendonly"))
    except redis.ResponseError as exc:
        log.info(
            "cannot read the config of Redis at %s (CONFIG disabled?): eviction and persistence not checked",
            where,
            extra={"error": one_line(exc)},
        )
        return {}
    config = {as_text(k): as_text(v) for k, v in config.items()}
    policy, maxmemory = config.get("maxmemory-policy", "noeviction"), int(config.get("maxmemory", "0") or 0)
    if maxmemory > 0 and policy != "noeviction":
        raise ServiceError(
            f"Redis at {where} may evict keys (maxmemory {maxmemory}, maxmemory-policy {policy}): checkpoints "
            "and the model registry would vanish under memory pressure; set maxmemory-policy noeviction"
        )
    if config.get("appendonly", "no") != "yes" and not config.get("save", "").strip():
        log.warning(
            "Redis at %s persists nothing (appendonly no, no save points): a restart of Redis loses every "
            "checkpoint and registry entry; enable appendonly (appendfsync everysec)",
            where,
        )
    return config


def as_text(value: Any) -> str:
    """A Redis reply (bytes from a client that does not decode responses) as text."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
