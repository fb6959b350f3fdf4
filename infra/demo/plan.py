"""The demo's stream and timing, derived from how long it may run."""

from __future__ import annotations

from dataclasses import dataclass

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
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
    # The previous day (the day-level model's samples), over 24 h of event time: enough for every user
    # and item, few enough that the shuffled fit takes ~10 s on 2 cores. 0: no day-level model.
    day_impressions: int = 36_000

    @classmethod
    def for_minutes(cls, minutes: float, impressions: int | None = None, seed: int = 7,
                    day_impressions: int | None = None) -> DemoPlan:
        if minutes <= 0:
            raise ValueError(f"the demo needs a positive number of minutes, got {minutes}")
        # About 6k impressions per minute of streaming keeps both processes busy but not behind on 2 cores.
        day = {} if day_impressions is None else {"day_impressions": day_impressions}
        return cls(minutes=minutes, impressions=impressions or int(6_000 * minutes), seed=seed, **day)

    def world_flags(self) -> list[str]:
        """The generator flags the live stream and the previous day share: one click model, one delay shape."""
        return ["--ctr", str(self.ctr), "--users", str(self.users), "--items", str(self.items),
                "--window", f"{self.window_ms}ms", "--horizon", f"{self.horizon_ms}ms",
                "--late-fraction", str(self.late_fraction), "--seed", str(self.seed)]

    def live_generator_flags(self) -> list[str]:
        return [*self.world_flags(), "--impressions", str(self.impressions), "--rate", f"{self.rate:.6f}",
                "--start", str(START_MS)]

    def day_generator_flags(self) -> list[str]:
        """The day before the live stream: its impressions spread over the 24 h before START_MS."""
        return [*self.world_flags(), "--impressions", str(self.day_impressions),
                "--rate", f"{self.day_impressions / (DAY_MS / 1000):.6f}", "--start", str(START_MS - DAY_MS),
                "--run-id", f"day-{self.seed}"]

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
