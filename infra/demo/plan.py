"""The demo's stream and timing, derived from how long it may run."""

from __future__ import annotations

from dataclasses import dataclass

HOUR_MS = 3_600_000
START_MS = 1_700_000_000_000


@dataclass(frozen=True)
class DemoPlan:
    """Event time: impressions over ``impression_hours``, clicks up to ``horizon_ms`` later. The
    sidecar trains on what the join emits before ``train_until_ms``; later impressions are held out."""

    minutes: float
    impressions: int
    impression_hours: float = 4.0
    holdout_share: float = 0.25
    window_ms: int = 10 * 60_000
    horizon_ms: int = 2 * HOUR_MS
    late_fraction: float = 0.5
    ctr: float = 0.3
    users: int = 200  # few enough that a few thousand impressions teach the model each one
    items: int = 100
    seed: int = 7

    @classmethod
    def for_minutes(cls, minutes: float, impressions: int | None = None, seed: int = 7) -> DemoPlan:
        if minutes <= 0:
            raise ValueError(f"the demo needs a positive number of minutes, got {minutes}")
        # About 6k impressions per minute of streaming keeps both processes busy but not behind on 2 cores.
        return cls(minutes=minutes, impressions=impressions or int(6_000 * minutes), seed=seed)

    @property
    def rate(self) -> float:
        """Impressions per second of event time."""
        return self.impressions / (self.impression_hours * 3600)

    @property
    def stream_ms(self) -> int:
        """Event time from the first impression to the last label."""
        return int(self.impression_hours * HOUR_MS) + self.horizon_ms

    @property
    def streaming_wall_s(self) -> float:
        """Wall time of the paced stream: the demo's minutes less start-up and the final report."""
        return max(30.0, self.minutes * 60 - 75)

    @property
    def speedup(self) -> float:
        """Event-time ms per wall ms."""
        return self.stream_ms / (self.streaming_wall_s * 1000)

    @property
    def train_until_ms(self) -> int:
        return START_MS + int(self.impression_hours * HOUR_MS * (1 - self.holdout_share))
