"""Generated delayed-feedback samples for the benchmark grid: a known click model, a delay family, the
join's attribution rules applied directly (no events file, no join run: the grid has 30 cells).

The click model: user and item biases and latent factors, a page effect and a position slope, its
intercept set so that the mean click probability is the world's CTR. A clicked impression clicks
within the window ``W`` (uniform in 1 s .. W) or, with probability ``late_share``, after it, at a delay
drawn from the family (:mod:`trainer.bench.families`). The join's rules (docs/join.md): a click within
``W`` gives a POSITIVE at the click; otherwise a NEGATIVE at ``t + W`` and, for a click within the
horizon ``H``, a LATE_POSITIVE at the click. Samples are Sample records (docs/wire-format.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.bench.families import HORIZON_MS, HOUR, WINDOW_MS, late_delays

START_MS = 1_700_000_000_000
PAGES = ("feed", "search", "detail")
PAGE_EFFECT = np.array([0.0, 0.5, -0.4])
FACTORS = 4


@dataclass(frozen=True)
class World:
    """One cell of the grid: a click model (from ``seed``), a delay family, a CTR and a late share."""

    family: str = "log-uniform"
    ctr: float = 0.3
    late_share: float = 0.5
    seed: int = 0
    users: int = 2000
    items: int = 500

    def model(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 1])
        return {
            "user_bias": rng.normal(0.0, 0.6, self.users),
            "item_bias": rng.normal(0.0, 0.6, self.items),
            "user_factors": rng.normal(0.0, 0.5, (self.users, FACTORS)),
            "item_factors": rng.normal(0.0, 0.5, (self.items, FACTORS)),
        }

    def generate(self, impressions: int, start_ms: float, hours: float, part: int, tag: str) -> Samples:
        """``impressions`` evenly spread over ``hours`` from ``start_ms``: every sample however late
        (complete labels), in emission order, and each impression's true click. ``part`` draws another
        stretch of the same world; ``tag`` prefixes the ids."""
        model = self.model()
        rng = np.random.default_rng([self.seed, 2, part])
        n = impressions
        t = (start_ms + np.arange(n) * (hours * HOUR / n)).astype(np.int64)
        user = np.minimum((rng.pareto(1.2, n) * self.users / 8).astype(np.int64), self.users - 1)
        item = rng.integers(0, self.items, n)
        page = rng.integers(0, len(PAGES), n)
        position = rng.integers(0, 4, n)
        score = model["user_bias"][user] + model["item_bias"][item] + PAGE_EFFECT[page] - 0.15 * position
        score += 1.5 * np.einsum("ij,ij->i", model["user_factors"][user], model["item_factors"][item])
        probability = _sigmoid(score + _intercept(score, self.ctr))
        clicked = rng.random(n) < probability
        late = clicked & (rng.random(n) < self.late_share)
        delay = np.where(late, late_delays(self.family, rng, n), rng.uniform(1_000.0, WINDOW_MS, n)).astype(np.int64)
        noise = rng.normal(0.0, 0.2, n)
        rows: list[tuple[int, dict[str, Any]]] = []
        truth: dict[str, int] = {}
        for i in range(n):
            iid = f"{tag}i{i:07d}"
            truth[iid] = int(clicked[i])
            base = {
                "task": "click",
                "request_id": f"{tag}r{i:07d}",
                "impression_id": iid,
                "user_id": f"u{user[i]:05d}",
                "item_id": f"v{item[i]:04d}",
                "position": int(position[i]),
                "context": {"page": PAGES[page[i]]},
                "impression_time_ms": int(t[i]),
                "sparse": {"city": f"c{user[i] % 20}"},
                "dense": {"u_ctr_7d": round(float(_sigmoid(model["user_bias"][user[i]] + noise[i] - 1.0)), 5)},
                "has_snapshot": True,
            }
            d = int(delay[i])
            if clicked[i] and not late[i]:
                rows.append((int(t[i]) + d, _sample(base, "POSITIVE", d)))
                continue
            rows.append((int(t[i]) + int(WINDOW_MS), _sample(base, "NEGATIVE", None)))
            if late[i] and d <= HORIZON_MS:
                rows.append((int(t[i]) + d, _sample(base, "LATE_POSITIVE", d)))
        rows.sort(key=lambda row: row[0])
        return Samples([r for _, r in rows], truth)


@dataclass(frozen=True)
class Samples:
    rows: list[dict[str, Any]]  # every sample (complete labels), in emission order
    truth: dict[str, int]  # impression_id -> clicked


@dataclass(frozen=True)
class Split:
    """What the online setting trains and scores on (as trainer/bench/data.py cuts the joined files)."""

    online: list[dict[str, Any]]  # emitted by the last training impression, in emission order
    offline: list[dict[str, Any]]  # every sample of the training impressions, however late
    oracle: list[dict[str, Any]]  # the training impressions with their true labels, in impression order
    test: list[dict[str, Any]]  # the impressions after them with their true labels
    history: list[dict[str, Any]]  # the previous day's complete samples (the day-level hot start)
    streamed: list[dict[str, Any]]  # the previous day and the training impressions as emitted by the cut
    streamed_oracle: list[dict[str, Any]]  # the same impressions with their true labels, in impression order


def truly_labelled(rows: list[dict[str, Any]], truth: dict[str, int]) -> list[dict[str, Any]]:
    """One sample per impression with its true label (LATE_POSITIVE duplicates dropped)."""
    out = []
    for s in rows:
        if s["attribution"] == "LATE_POSITIVE":
            continue
        label = truth[s["impression_id"]]
        delay = s["delay_ms"] if label and s["delay_ms"] is not None else (1_000 if label else None)
        attribution = "POSITIVE" if label else "NEGATIVE"
        out.append(
            {
                **s,
                "label": label,
                "attribution": attribution,
                "sample_id": f"{s['impression_id']}:click:{attribution}",
                "delay_ms": delay,
                "label_time_ms": None if delay is None else s["impression_time_ms"] + delay,
            }
        )
    return out


def split(world: World, impressions: int, train_hours: float, test_hours: float, history_hours: float = 24.0) -> Split:
    """The training and test impressions (``train_hours`` then ``test_hours``), and a previous day."""
    hours = train_hours + test_hours
    stream = world.generate(impressions, START_MS, hours, part=0, tag=f"s{world.seed}.")
    day = world.generate(
        round(impressions * history_hours / hours), START_MS - history_hours * HOUR, history_hours, 1, f"h{world.seed}."
    )
    last = START_MS + train_hours * HOUR
    train = [s for s in stream.rows if s["impression_time_ms"] <= last]
    online = [s for s in stream.rows if s["emit_time_ms"] <= last]
    oracle = sorted(truly_labelled(train, stream.truth), key=lambda s: s["impression_time_ms"])
    return Split(
        online=online,
        offline=train,
        oracle=oracle,
        test=truly_labelled([s for s in stream.rows if s["impression_time_ms"] > last], stream.truth),
        history=day.rows,
        # the previous day's samples are emitted before the stream's (both in emission order)
        streamed=sorted([s for s in day.rows if s["emit_time_ms"] <= last] + online, key=lambda s: s["emit_time_ms"]),
        streamed_oracle=sorted(truly_labelled(day.rows, day.truth), key=lambda s: s["impression_time_ms"]) + oracle,
    )


def _sample(base: dict[str, Any], attribution: str, delay: int | None) -> dict[str, Any]:
    t = base["impression_time_ms"]
    label_time = None if delay is None else t + delay
    return {
        **base,
        "sample_id": f"{base['impression_id']}:click:{attribution}",
        "label": 0 if attribution == "NEGATIVE" else 1,
        "attribution": attribution,
        "label_time_ms": label_time,
        "delay_ms": delay,
        "emit_time_ms": label_time if label_time is not None else t + int(WINDOW_MS),
    }


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _intercept(score: np.ndarray, ctr: float) -> float:
    """The shift that makes the mean click probability ``ctr`` (bisection)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        middle = 0.5 * (low + high)
        if float(_sigmoid(score + middle).mean()) < ctr:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)
