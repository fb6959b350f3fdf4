"""Event-time watermarks as Flink's BoundedOutOfOrderness generates them.

watermark = largest event time seen - out_of_orderness - 1 ms; a timer at ``T`` fires once the
watermark is ``>= T``. Before any event the watermark is :data:`WATERMARK_START`; the end of a
bounded input advances it to :data:`WATERMARK_END`, firing every pending timer.
"""

from __future__ import annotations

from jobs.core.state import WATERMARK_END, WATERMARK_START

__all__ = ["WATERMARK_END", "WATERMARK_START", "BoundedOutOfOrderness", "combine_watermarks"]


class BoundedOutOfOrderness:
    """Tracks one input's watermark (e.g. one partition's)."""

    __slots__ = ("max_event_time_ms", "out_of_orderness_ms")

    def __init__(self, out_of_orderness_ms: int) -> None:
        if out_of_orderness_ms < 0:
            raise ValueError(f"out_of_orderness must be non-negative, got {out_of_orderness_ms} ms")
        self.out_of_orderness_ms = out_of_orderness_ms
        self.max_event_time_ms: int | None = None

    def observe(self, event_time_ms: int) -> None:
        m = self.max_event_time_ms
        if m is None or event_time_ms > m:
            self.max_event_time_ms = event_time_ms

    @property
    def current(self) -> int:
        m = self.max_event_time_ms
        if m is None:
            return WATERMARK_START
        return max(WATERMARK_START, m - self.out_of_orderness_ms - 1)


def combine_watermarks(watermarks: list[int]) -> int:
    """The minimum over inputs (Flink's rule); no inputs -> WATERMARK_START."""
    return min(watermarks) if watermarks else WATERMARK_START
