"""Event-time watermarks of the embedded runtime, per input partition, with idleness.

The three event topics are co-partitioned by ``request_id``: partition *p* of each topic carries the
same requests, and all of a request's state lives with *p*. So the runtime keeps one
:class:`PartitionWatermark` per partition number *p*, fed by partition *p* of each input topic, and
drives the timers of *p*'s keys with it: the watermark of each source is ``max event time seen -
out_of_orderness - 1 ms`` (Flink's BoundedOutOfOrderness), *p*'s watermark is the minimum over its
sources, a source silent for ``idleness`` of wall time stops holding it back, and it never goes
backwards. A key's timers then depend only on the events that can reach that key, so restores are
exact and splitting partitions over processes changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from jobs.core.state import WATERMARK_END, WATERMARK_START

Clock = Callable[[], float]  # seconds, monotonic


class PartitionWatermark:
    """The watermark of one partition number over its source topics."""

    __slots__ = ("_active", "_clock", "_idle_s", "_lag", "_low", "current", "last_seen", "max_ts")

    def __init__(
        self,
        sources: Iterable[str],
        out_of_orderness_ms: int,
        idleness_ms: int,
        clock: Clock,
        max_ts: dict[str, int] | None = None,
        floor: int = WATERMARK_START,
    ) -> None:
        self._lag = out_of_orderness_ms + 1
        self._idle_s = idleness_ms / 1000.0
        self._clock = clock
        now = clock()
        restored = max_ts or {}
        self.max_ts: dict[str, int] = {s: restored.get(s, WATERMARK_START) for s in sources}
        self.last_seen: dict[str, float] = dict.fromkeys(self.max_ts, now)
        self._active: dict[str, bool] = dict.fromkeys(self.max_ts, True)
        self.current = floor
        # the minimum over the active sources at the last recompute: a source above it that moves on
        # cannot move the watermark (a source becoming active again can only be lower still)
        self._low = WATERMARK_END

    def observe(self, source: str, event_time_ms: int) -> bool:
        """Record an event's time; returns True when the watermark advanced. (Activity for the
        idleness rule is recorded separately, once per batch: :meth:`touch`.)"""
        if not self._active[source]:
            self._active[source] = True
        max_ts = self.max_ts
        before = max_ts[source]
        if event_time_ms > before:
            max_ts[source] = event_time_ms
            return before <= self._low and self._recompute()
        return False

    def touch(self, source: str, now: float | None = None) -> None:
        """Data arrived on ``source`` (at wall time ``now``): it is active, not idle."""
        self.last_seen[source] = self._clock() if now is None else now
        if not self._active[source]:
            self._active[source] = True

    def excuse(self, now: float) -> None:
        """The runtime itself was blocked until ``now``: active sources count as just seen."""
        for source, active in self._active.items():
            if active:
                self.last_seen[source] = now

    def check_idle(self) -> bool:
        """Mark sources silent for the idleness time as idle; returns True when the watermark advanced."""
        now = self._clock()
        changed = False
        for source, seen in self.last_seen.items():
            if self._active[source] and now - seen >= self._idle_s:
                self._active[source] = False
                changed = True
        return self._recompute() if changed else False

    def _recompute(self) -> bool:
        low = None
        for source, ts in self.max_ts.items():
            if self._active[source] and (low is None or ts < low):
                low = ts
        self._low = WATERMARK_END if low is None else low
        if low is None:  # every source idle: hold where we are
            return False
        wm = low - self._lag if low > WATERMARK_START + self._lag else WATERMARK_START
        if wm > self.current:
            self.current = wm
            return True
        return False

    def idle_sources(self) -> list[str]:
        return [s for s, active in self._active.items() if not active]
