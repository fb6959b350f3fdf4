"""Synthetic delayed-feedback event generator: ``python -m jobs.generate``.

Writes impressions, feature snapshots and labels (docs/wire-format.md JSON forms) in **arrival order** to a
JSONL file (``--out``) and/or to Kafka (``--bootstrap-servers``: Avro single-object encoding via the
``schemas`` codec, keyed by ``request_id``, topics of docs/wire-format.md), plus a ground-truth file
(``--truth``) with one JSON line per distinct impression.

The click model is known: a logistic model in user and item latent factors, user/item biases and a
few sparse (``city``, ``device``, ``u_seg``, ``page``) and dense (``u_ctr_7d``, ``u_activity``)
features that carry real signal, with a position bias. The intercept is calibrated so that the mean
click probability equals ``--ctr``.

Timing, relative to the join's negative window W (``--window``) and attribution horizon H
(``--horizon``): of the clicked impressions, ``--late-fraction`` click after W (log-uniform in
(W, H]) and ``--beyond-horizon-fraction`` after H; the rest click within W (exponential with mean
``--delay-mean``, truncated to W). Feature snapshots arrive a little after their request (some are
missing), a fraction of impressions and labels are duplicated, some labels are orphans (no
impression), and some labels are of other types (``conversion`` after a click, ``like``).

Bounded disorder: every event's arrival time is its event time plus a uniform jitter in
``[0, --disorder]``, and events are written sorted by arrival time, so no event is older than the
largest event time written before it by more than ``--disorder`` (keep it within the join's
``out_of_orderness``).

Everything is a deterministic function of ``--seed`` and the other flags. In Kafka mode
``--speedup X`` paces the writes so that X ms of event time pass per ms of wall time (600: ten
minutes of event time per second); 0 (the default) writes as fast as possible.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from infra.config import parse_duration_ms
from infra.output import AtomicFile
from jobs.core.events import FeatureSnapshot, Impression, Label, event_to_json

DEFAULT_START_MS = 1_700_000_000_000

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

    def validate(self) -> None:
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
        request_id = f"r{n:08d}"
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
                orphan = f"x{n:08d}-{position}"
                self._schedule(self._label(f"x{n:08d}", orphan, "click", t_req + rng.randint(0, cfg.window_ms)))

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


# -- sinks --------------------------------------------------------------------------------------------


def _output(path: str) -> AtomicFile:
    """An output file that appears only when the run completes (a one-line error if it cannot be made)."""
    try:
        return AtomicFile(path)
    except OSError as exc:
        raise GenerateError(f"cannot write {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class KafkaTarget:
    bootstrap_servers: str
    impressions: str = "events.impressions"
    feature_snapshots: str = "events.feature_snapshots"
    labels: str = "events.labels"
    create_partitions: int | None = None  # create missing topics with this many partitions
    extra: dict[str, Any] = field(default_factory=dict)


class KafkaSink:
    """Avro single-object encoded events keyed by request_id, to the three event topics."""

    def __init__(self, target: KafkaTarget):
        from confluent_kafka import Producer

        from jobs.runtime.kafka_io import ensure_topics, event_json_to_wire

        self._encode = event_json_to_wire
        self.topics = {
            "impression": target.impressions,
            "feature_snapshot": target.feature_snapshots,
            "label": target.labels,
        }
        if target.create_partitions:
            ensure_topics(target.bootstrap_servers, list(self.topics.values()), target.create_partitions)
        conf = {
            "bootstrap.servers": target.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",  # the Java clients' partitioner: co-partitioned with them too
            "queue.buffering.max.messages": 500_000,
            "error_cb": self._on_error,
            **target.extra,
        }
        self._errors: list[str] = []
        self._producer = Producer(conf)
        self._failed = 0

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._errors.append(str(err))

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failed += 1
            self._errors.append(str(err))

    def write(self, event: dict[str, Any]) -> None:
        value = self._encode(event)
        topic = self.topics[event["type"]]
        key = event["request_id"].encode()
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._delivered)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)
        if self._errors:
            raise GenerateError(f"Kafka producer failed: {self._errors[0]}")

    def close(self) -> None:
        remaining = self._producer.flush(60)
        if remaining or self._errors or self._failed:
            raise GenerateError(
                f"Kafka producer failed: {remaining} undelivered, {self._failed} failed"
                + (f" ({self._errors[0]})" if self._errors else "")
            )


def run(
    cfg: GeneratorConfig,
    out: str | None = None,
    truth: str | None = None,
    kafka: KafkaTarget | None = None,
    speedup: float = 0.0,
    progress: Callable[[str], None] | None = None,
    progress_every_s: float = 5.0,
) -> Stats:
    """Generate ``cfg``'s stream into the given sinks; returns the stream's statistics."""
    if out is None and kafka is None:
        raise GenerateError("give --out FILE and/or --bootstrap-servers HOST:PORT")
    files: list[AtomicFile] = []
    sink: KafkaSink | None = None
    try:
        out_file = _output(out) if out else None
        if out_file:
            files.append(out_file)
        truth_file = _output(truth) if truth else None
        if truth_file:
            files.append(truth_file)
        on_truth = None
        if truth_file is not None:
            write_truth = truth_file.write

            def on_truth(row: dict[str, Any]) -> None:
                write_truth((json.dumps(row, separators=(",", ":")) + "\n").encode())

        gen = Generator(cfg, on_truth)
        sink = KafkaSink(kafka) if kafka is not None else None
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        out_write = out_file.write if out_file else None
        wall0 = time.monotonic()
        last_report = wall0
        first_arrival: int | None = None
        for arrival, event in gen.events():
            if out_write is not None:
                out_write((dumps(event) + "\n").encode())
            if sink is not None:
                if speedup > 0:
                    if first_arrival is None:
                        first_arrival = arrival
                    due = wall0 + (arrival - first_arrival) / 1000.0 / speedup
                    delay = due - time.monotonic()
                    if delay > 0.002:
                        time.sleep(delay)
                sink.write(event)
            if progress is not None and gen.stats.events % 4096 == 0:
                now = time.monotonic()
                if now - last_report >= progress_every_s:
                    last_report = now
                    s = gen.stats
                    progress(
                        f"generate: {s.impressions}/{cfg.impressions} impressions, {s.events} events, "
                        f"{s.events / (now - wall0):.0f} events/s"
                    )
        if sink is not None:
            sink.close()
            sink = None
        for f in files:
            f.commit()
        files.clear()
        return gen.stats
    finally:
        for f in files:
            f.discard()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jobs.generate",
        description="Generate delayed-feedback events (impressions, feature snapshots, labels) with ground truth.",
    )
    d = GeneratorConfig()
    out = p.add_argument_group("outputs")
    out.add_argument("--out", help="JSONL file of events in arrival order")
    out.add_argument("--truth", help="JSONL ground truth, one line per distinct impression")
    out.add_argument("--bootstrap-servers", help="write Avro events to this Kafka cluster")
    out.add_argument("--topic-impressions", default="events.impressions")
    out.add_argument("--topic-feature-snapshots", default="events.feature_snapshots")
    out.add_argument("--topic-labels", default="events.labels")
    out.add_argument(
        "--create-topics", type=int, metavar="PARTITIONS", help="create missing event topics with this many partitions"
    )
    out.add_argument(
        "--speedup",
        type=float,
        default=0.0,
        help="Kafka mode: event-time ms per wall ms (600 = 10 min/s); 0 = no pacing",
    )
    out.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    out.add_argument("--summary", action="store_true", help="print the stream's statistics as JSON on stdout")
    m = p.add_argument_group("stream")
    m.add_argument("--impressions", type=int, default=d.impressions)
    m.add_argument("--users", type=int, default=d.users)
    m.add_argument("--items", type=int, default=d.items)
    m.add_argument("--ctr", type=float, default=d.ctr, help="mean click probability")
    m.add_argument("--rate", type=float, default=d.rate, help="impressions per second of event time")
    m.add_argument("--slate", type=int, default=d.slate, help="at most this many impressions per request")
    m.add_argument("--window", default="10m", help="the join's negative window W (places delays)")
    m.add_argument("--horizon", default="24h", help="the join's attribution horizon H (places delays)")
    m.add_argument("--delay-mean", default="60s", help="mean click delay within the window (exponential)")
    m.add_argument(
        "--late-fraction", type=float, default=d.late_fraction, help="fraction of clicks with W < delay <= H"
    )
    m.add_argument(
        "--beyond-horizon-fraction",
        type=float,
        default=d.beyond_horizon_fraction,
        help="fraction of clicks with delay > H",
    )
    m.add_argument("--snapshot-max-delay", default="2s", help="feature snapshots lag their request by up to this")
    m.add_argument(
        "--snapshot-missing", type=float, default=d.snapshot_missing, help="fraction of requests without a snapshot"
    )
    m.add_argument(
        "--duplicate-rate",
        type=float,
        default=d.duplicate_rate,
        help="fraction of impressions and of clicks sent twice",
    )
    m.add_argument(
        "--orphan-rate", type=float, default=d.orphan_rate, help="orphan click labels (no impression) per impression"
    )
    m.add_argument(
        "--conversion-rate",
        type=float,
        default=d.conversion_rate,
        help="fraction of clicks followed by a 'conversion' label",
    )
    m.add_argument("--like-rate", type=float, default=d.like_rate, help="'like' labels per impression")
    m.add_argument("--disorder", default="2s", help="bound on out-of-orderness (keep <= the join's)")
    m.add_argument("--start", default=str(DEFAULT_START_MS), help="first event time (ms since epoch, or 'now')")
    m.add_argument("--seed", type=int, default=d.seed)
    return p


def config_from_args(args: argparse.Namespace) -> GeneratorConfig:
    try:
        start = int(time.time() * 1000) if args.start == "now" else int(args.start)
    except ValueError as exc:
        raise GenerateError(f"--start must be ms since the epoch or 'now', got {args.start!r}") from exc
    try:
        durations = {
            name: parse_duration_ms(getattr(args, name))
            for name in ("window", "horizon", "delay_mean", "snapshot_max_delay", "disorder")
        }
    except ValueError as exc:
        raise GenerateError(str(exc)) from exc
    cfg = GeneratorConfig(
        impressions=args.impressions,
        users=args.users,
        items=args.items,
        ctr=args.ctr,
        rate=args.rate,
        slate=args.slate,
        window_ms=durations["window"],
        horizon_ms=durations["horizon"],
        delay_mean_ms=durations["delay_mean"],
        late_fraction=args.late_fraction,
        beyond_horizon_fraction=args.beyond_horizon_fraction,
        snapshot_max_delay_ms=durations["snapshot_max_delay"],
        snapshot_missing=args.snapshot_missing,
        duplicate_rate=args.duplicate_rate,
        orphan_rate=args.orphan_rate,
        conversion_rate=args.conversion_rate,
        like_rate=args.like_rate,
        disorder_ms=durations["disorder"],
        start_ms=start,
        seed=args.seed,
    )
    cfg.validate()
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        kafka = None
        if args.bootstrap_servers:
            kafka = KafkaTarget(
                bootstrap_servers=args.bootstrap_servers,
                impressions=args.topic_impressions,
                feature_snapshots=args.topic_feature_snapshots,
                labels=args.topic_labels,
                create_partitions=args.create_topics,
            )
        elif args.speedup:
            raise GenerateError("--speedup paces Kafka writes; give --bootstrap-servers")

        def progress(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        stats = run(
            cfg,
            out=args.out,
            truth=args.truth,
            kafka=kafka,
            speedup=args.speedup,
            progress=None if args.quiet else progress,
        )
    except (GenerateError, OSError) as exc:
        print(f"generate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("generate: interrupted", file=sys.stderr)
        return 130
    if args.summary:
        print(json.dumps(stats.to_json(), sort_keys=True))
    elif not args.quiet:
        print(f"generate: {json.dumps(stats.to_json(), sort_keys=True)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
