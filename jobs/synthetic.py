"""The synthetic delayed-feedback stream behind ``python -m jobs.generate``: a known click model
and the events it produces, in arrival order (see :mod:`jobs.generate` for the model and timing).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jobs.core.events import FeatureSnapshot, Impression, Label, event_to_json

DEFAULT_START_MS = 1_700_000_000_000
RUN_ID = re.compile(r"[A-Za-z0-9_-]{0,32}")

CITIES = ("bj", "sh", "gz", "sz", "cd", "hz", "wh", "xa")
DEVICES = ("ios", "android", "web")
PAGES = ("feed", "search", "detail")
SEGMENTS = ("new", "casual", "regular", "heavy")
LATENT_DIM = 4


class GenerateError(Exception):
    """A bad argument or an output that cannot be written; the message is one line."""


@dataclass(frozen=True)
class GeneratorConfig:
    impressions: int = 10_000
    users: int = 1_000
    items: int = 500
    ctr: float = 0.05
    rate: float = 50.0  # impressions per second of event time
    slate: int = 4  # at most this many impressions per request
    window_ms: int = 10 * 60_000
    horizon_ms: int = 24 * 3_600_000
    delay_mean_ms: int = 60_000
    late_fraction: float = 0.1
    beyond_horizon_fraction: float = 0.02
    snapshot_max_delay_ms: int = 2_000
    snapshot_missing: float = 0.02
    duplicate_rate: float = 0.01
    orphan_rate: float = 0.005
    conversion_rate: float = 0.1  # of clicks
    like_rate: float = 0.01  # of impressions
    disorder_ms: int = 2_000
    start_ms: int = DEFAULT_START_MS
    seed: int = 0
    # Prefix of the request and impression ids ("{run_id}.r00000000-0"), so that two runs into the same
    # topics never share one (a shared impression id would get both runs' labels). "" : no prefix.
    # User and item ids are the model's features: they stay shared across runs.
    run_id: str = ""

    def validate(self) -> None:
        if not RUN_ID.fullmatch(self.run_id):
            raise GenerateError(
                f"--run-id must be at most 32 letters, digits, '_' or '-', got {self.run_id!r}"
            )
        if self.impressions < 0:
            raise GenerateError(f"--impressions must be >= 0, got {self.impressions}")
        if self.users < 1 or self.items < 1:
            raise GenerateError(f"--users and --items must be >= 1, got {self.users} and {self.items}")
        if self.slate < 1:
            raise GenerateError(f"--slate must be >= 1, got {self.slate}")
        if not 0.0 < self.ctr < 1.0:
            raise GenerateError(f"--ctr must be in (0, 1), got {self.ctr}")
        if self.rate <= 0:
            raise GenerateError(f"--rate must be positive, got {self.rate}")
        if self.window_ms <= 0 or self.horizon_ms < self.window_ms:
            raise GenerateError(
                f"need 0 < --window <= --horizon, got window {self.window_ms} ms, horizon {self.horizon_ms} ms"
            )
        for name in (
            "late_fraction",
            "beyond_horizon_fraction",
            "snapshot_missing",
            "duplicate_rate",
            "orphan_rate",
            "conversion_rate",
            "like_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise GenerateError(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
        if self.late_fraction + self.beyond_horizon_fraction > 1.0:
            raise GenerateError(
                "--late-fraction + --beyond-horizon-fraction must not exceed 1, got "
                f"{self.late_fraction} + {self.beyond_horizon_fraction}"
            )
        if self.horizon_ms == self.window_ms and self.late_fraction > 0:
            raise GenerateError("--late-fraction > 0 needs --horizon longer than --window")
        if self.disorder_ms < 0 or self.snapshot_max_delay_ms < 0 or self.delay_mean_ms <= 0:
            raise GenerateError("--disorder and --snapshot-max-delay must be >= 0 and --delay-mean > 0")


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass
class ClickModel:
    """The known ground truth: p(click | user, item, context), fixed by the seed."""

    user_vec: list[list[float]]
    item_vec: list[list[float]]
    user_bias: list[float]
    item_bias: list[float]
    user_city: list[int]
    user_seg: list[int]
    item_cat: list[int]
    user_cum: list[float]  # cumulative popularity weights (Zipf-like)
    item_cum: list[float]
    city_effect: tuple[float, ...] = (0.3, 0.2, -0.1, 0.1, -0.3, 0.0, -0.2, 0.15)
    device_effect: tuple[float, ...] = (0.25, 0.0, -0.35)
    page_effect: tuple[float, ...] = (0.0, 0.4, -0.25)
    seg_effect: tuple[float, ...] = (-0.4, -0.1, 0.15, 0.45)
    position_slope: float = -0.12
    intercept: float = 0.0
    cat_affinity: dict[tuple[int, int], float] = field(default_factory=dict)

    @classmethod
    def build(cls, cfg: GeneratorConfig, rng: random.Random) -> ClickModel:
        def vec() -> list[float]:
            return [rng.gauss(0.0, 0.45) for _ in range(LATENT_DIM)]

        def zipf_cum(n: int, s: float) -> list[float]:
            return list(itertools.accumulate(1.0 / (k + 1) ** s for k in range(n)))

        users, items = cfg.users, cfg.items
        model = cls(
            user_vec=[vec() for _ in range(users)],
            item_vec=[vec() for _ in range(items)],
            user_bias=[rng.gauss(0.0, 0.5) for _ in range(users)],
            item_bias=[rng.gauss(0.0, 0.5) for _ in range(items)],
            user_city=[rng.randrange(len(CITIES)) for _ in range(users)],
            user_seg=[rng.randrange(len(SEGMENTS)) for _ in range(users)],
            item_cat=[rng.randrange(20) for _ in range(items)],
            user_cum=zipf_cum(users, 0.6),
            item_cum=zipf_cum(items, 0.8),
        )
        for seg in range(len(SEGMENTS)):
            for cat in range(20):
                model.cat_affinity[(seg, cat)] = rng.gauss(0.0, 0.3)
        model.intercept = model._calibrate(cfg.ctr, cfg.slate, random.Random(rng.random()))
        return model

    def pick_user(self, rng: random.Random) -> int:
        return min(bisect_right(self.user_cum, rng.random() * self.user_cum[-1]), len(self.user_cum) - 1)

    def pick_item(self, rng: random.Random) -> int:
        return min(bisect_right(self.item_cum, rng.random() * self.item_cum[-1]), len(self.item_cum) - 1)

    def logit(self, user: int, item: int, device: int, page: int, position: int) -> float:
        u, v = self.user_vec[user], self.item_vec[item]
        dot = u[0] * v[0] + u[1] * v[1] + u[2] * v[2] + u[3] * v[3]
        seg = self.user_seg[user]
        return (
            self.intercept
            + self.user_bias[user]
            + self.item_bias[item]
            + 2.0 * dot
            + self.city_effect[self.user_city[user]]
            + self.device_effect[device]
            + self.page_effect[page]
            + self.seg_effect[seg]
            + self.cat_affinity[(seg, self.item_cat[item])]
            + self.position_slope * position
        )

    def _calibrate(self, ctr: float, slate: int, rng: random.Random) -> float:
        """Find the intercept whose mean click probability over a pilot population equals ``ctr``."""
        pilot = []
        for _ in range(4_000):
            user = self.pick_user(rng)
            pilot.append(
                self.logit(user, self.pick_item(rng), rng.randrange(3), rng.randrange(3), rng.randrange(slate))
            )
        lo, hi = -20.0, 20.0
        for _ in range(60):
            mid = (lo + hi) / 2
            mean = sum(_sigmoid(x + mid) for x in pilot) / len(pilot)
            if mean < ctr:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2


@dataclass
class Stats:
    requests: int = 0
    impressions: int = 0
    events: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    clicks: int = 0
    late_clicks: int = 0
    beyond_horizon_clicks: int = 0
    duplicates: int = 0
    orphans: int = 0
    missing_snapshots: int = 0
    first_event_ms: int | None = None
    last_event_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "impressions": self.impressions,
            "events": self.events,
            "by_type": dict(sorted(self.by_type.items())),
            "clicks": self.clicks,
            "ctr": round(self.clicks / self.impressions, 6) if self.impressions else 0.0,
            "late_clicks": self.late_clicks,
            "beyond_horizon_clicks": self.beyond_horizon_clicks,
            "duplicates": self.duplicates,
            "orphan_labels": self.orphans,
            "missing_snapshots": self.missing_snapshots,
            "event_time_span_ms": (self.last_event_ms or 0) - (self.first_event_ms or 0),
        }


class Generator:
    """Yields ``(arrival_ms, event_json)`` in arrival order and reports ground truth per impression."""

    def __init__(self, cfg: GeneratorConfig, on_truth: Callable[[dict[str, Any]], None] | None = None):
        cfg.validate()
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.model = ClickModel.build(cfg, random.Random(self.rng.random()))
        self.on_truth = on_truth
        self.stats = Stats()
        self._seq = itertools.count()
        self._heap: list[tuple[int, int, dict[str, Any]]] = []
        self._id_prefix = f"{cfg.run_id}." if cfg.run_id else ""

    # -- scheduling -------------------------------------------------------------------------------

    def _schedule(self, event: dict[str, Any]) -> None:
        jitter = self.rng.randint(0, self.cfg.disorder_ms) if self.cfg.disorder_ms else 0
        heapq.heappush(self._heap, (event["event_time_ms"] + jitter, next(self._seq), event))

    def _drain(self, until_ms: int | None) -> Iterator[tuple[int, dict[str, Any]]]:
        heap = self._heap
        while heap and (until_ms is None or heap[0][0] <= until_ms):
            arrival, _, event = heapq.heappop(heap)
            stats = self.stats
            stats.events += 1
            kind = event["type"] if event["type"] != "label" else f"label:{event['label_type']}"
            stats.by_type[kind] = stats.by_type.get(kind, 0) + 1
            t = event["event_time_ms"]
            if stats.first_event_ms is None or t < stats.first_event_ms:
                stats.first_event_ms = t
            if stats.last_event_ms is None or t > stats.last_event_ms:
                stats.last_event_ms = t
            yield arrival, event

    # -- the model's draws ------------------------------------------------------------------------

    def _click_delay(self) -> int:
        cfg, rng = self.cfg, self.rng
        u = rng.random()
        if u < cfg.beyond_horizon_fraction:
            self.stats.beyond_horizon_clicks += 1
            return cfg.horizon_ms + 1 + int(rng.random() * max(cfg.window_ms, cfg.horizon_ms // 4))
        if u < cfg.beyond_horizon_fraction + cfg.late_fraction:
            self.stats.late_clicks += 1
            lo, hi = math.log(cfg.window_ms + 1), math.log(cfg.horizon_ms)
            return min(cfg.horizon_ms, max(cfg.window_ms + 1, int(math.exp(rng.uniform(lo, hi)))))
        while True:  # exponential truncated to (0, W]
            delay = int(rng.expovariate(1.0 / cfg.delay_mean_ms)) + 100
            if delay <= cfg.window_ms:
                return delay

    def _label(self, request_id: str, impression_id: str, label_type: str, t: int) -> dict[str, Any]:
        return event_to_json(Label(request_id, impression_id, label_type, t, 1.0))

    def _request(self, n: int, t_req: int) -> None:
        cfg, rng, model, stats = self.cfg, self.rng, self.model, self.stats
        request_id = f"{self._id_prefix}r{n:08d}"
        user = model.pick_user(rng)
        user_id = f"u{user:06d}"
        device = rng.randrange(len(DEVICES))
        page = rng.randrange(len(PAGES))
        stats.requests += 1

        if rng.random() < cfg.snapshot_missing:
            stats.missing_snapshots += 1
        else:
            noise = rng.gauss(0.0, 0.3)
            snapshot = FeatureSnapshot(
                request_id=request_id,
                event_time_ms=t_req + rng.randint(0, cfg.snapshot_max_delay_ms),
                sparse={
                    "city": CITIES[model.user_city[user]],
                    "device": DEVICES[device],
                    "u_seg": SEGMENTS[model.user_seg[user]],
                },
                dense={
                    "u_ctr_7d": round(_sigmoid(model.intercept + model.user_bias[user] + noise), 6),
                    "u_activity": round(math.log1p(1000.0 / (user + 1)), 6),
                },
            )
            self._schedule(event_to_json(snapshot))

        size = min(rng.randint(1, cfg.slate), cfg.impressions - stats.impressions)
        seen_items: set[int] = set()
        for position in range(size):
            item = model.pick_item(rng)
            while item in seen_items and len(seen_items) < cfg.items:
                item = rng.randrange(cfg.items)
            seen_items.add(item)
            impression_id = f"{request_id}-{position}"
            impression = event_to_json(
                Impression(
                    request_id=request_id,
                    impression_id=impression_id,
                    user_id=user_id,
                    item_id=f"v{item:05d}",
                    event_time_ms=t_req,
                    position=position,
                    context={"page": PAGES[page], "item_cat": f"c{model.item_cat[item]:02d}"},
                )
            )
            stats.impressions += 1
            self._schedule(impression)
            if rng.random() < cfg.duplicate_rate:
                stats.duplicates += 1
                self._schedule(impression)

            p = _sigmoid(model.logit(user, item, device, page, position))
            clicked = rng.random() < p
            delay: int | None = None
            if clicked:
                stats.clicks += 1
                delay = self._click_delay()
                label = self._label(request_id, impression_id, "click", t_req + delay)
                self._schedule(label)
                if rng.random() < cfg.duplicate_rate:
                    stats.duplicates += 1
                    self._schedule(dict(label))
                if rng.random() < cfg.conversion_rate:
                    conv_t = t_req + delay + int(rng.expovariate(1.0 / (5 * 60_000))) + 1
                    self._schedule(self._label(request_id, impression_id, "conversion", conv_t))
            if rng.random() < cfg.like_rate:
                self._schedule(self._label(request_id, impression_id, "like", t_req + rng.randint(500, 120_000)))
            if self.on_truth is not None:
                self.on_truth(
                    {
                        "impression_id": impression_id,
                        "request_id": request_id,
                        "user_id": user_id,
                        "item_id": impression["item_id"],
                        "impression_time_ms": t_req,
                        "p_click": round(p, 6),
                        "clicked": clicked,
                        "delay_ms": delay,
                    }
                )
            if rng.random() < cfg.orphan_rate:
                stats.orphans += 1
                orphan_request = f"{self._id_prefix}x{n:08d}"
                orphan = f"{orphan_request}-{position}"
                self._schedule(self._label(orphan_request, orphan, "click", t_req + rng.randint(0, cfg.window_ms)))

    def events(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """All events as ``(arrival_ms, event)``, sorted by arrival time (ties in creation order)."""
        cfg = self.cfg
        mean_gap_ms = 1000.0 * (1 + cfg.slate) / 2 / cfg.rate  # requests carry (1+slate)/2 impressions
        t = float(cfg.start_ms)
        n = 0
        while self.stats.impressions < cfg.impressions:
            t_req = int(t)
            self._request(n, t_req)
            n += 1
            # every event scheduled later has arrival >= its event time >= t_req: safe to emit up to t_req
            yield from self._drain(t_req)
            t += self.rng.expovariate(1.0 / mean_gap_ms)
        yield from self._drain(None)
