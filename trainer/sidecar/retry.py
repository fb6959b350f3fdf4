"""Retry with exponential backoff while Kafka or Redis is briefly unreachable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from trainer.sidecar.errors import Unavailable

log = logging.getLogger("trainer.sidecar")
T = TypeVar("T")


def retrying(
    action: Callable[[], T],
    what: str,
    transient: tuple[type[BaseException], ...],
    give_up_after_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``action()``, retried on ``transient`` errors (0.1 s, doubling to 5 s) for ``give_up_after_s``;
    then :class:`Unavailable` naming ``what``."""
    deadline = clock() + give_up_after_s
    delay = 0.1
    while True:
        try:
            return action()
        except transient as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if clock() + delay > deadline:
                raise Unavailable(f"{what}: {reason} (gave up after {give_up_after_s:g} s)") from exc
            log.warning("%s failed, retrying in %.1f s", what, delay, extra={"error": reason})
            sleep(delay)
            delay = min(delay * 2.0, 5.0)
