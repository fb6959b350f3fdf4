"""Synthetic delayed-feedback samples for the trainer tests (no join needed).

A known click model (user/item biases and latent factors, a page effect, a position slope) and the
join's attribution rules (docs/join.md): a click within the window W -> POSITIVE; a later one within the
horizon -> NEGATIVE, then LATE_POSITIVE with the same features; none, or beyond the horizon -> NEGATIVE.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

WINDOW_MS = 10 * 60_000
HORIZON_MS = 24 * 3_600_000
START_MS = 1_700_000_000_000


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def make_samples(
    impressions: int = 2000,
    users: int = 100,
    items: int = 50,
    ctr_logit: float = -1.5,
    late_fraction: float = 0.5,
    beyond_fraction: float = 0.0,
    seed: int = 0,
    spacing_ms: int = 100,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Samples in emit order, and the truth (impression_id -> clicked); impressions ``spacing_ms`` apart."""
    rng = random.Random(seed)
    ub = [rng.gauss(0, 0.6) for _ in range(users)]
    ib = [rng.gauss(0, 0.6) for _ in range(items)]
    uv = [[rng.gauss(0, 0.5) for _ in range(3)] for _ in range(users)]
    iv = [[rng.gauss(0, 0.5) for _ in range(3)] for _ in range(items)]
    pages = ("feed", "search", "detail")
    page_effect = {"feed": 0.0, "search": 0.5, "detail": -0.4}
    samples: list[tuple[int, dict[str, Any]]] = []
    truth: dict[str, int] = {}
    for n in range(impressions):
        u, i = rng.randrange(users), rng.randrange(items)
        page = rng.choice(pages)
        position = rng.randrange(4)
        t = START_MS + n * spacing_ms
        logit = ctr_logit + ub[u] + ib[i] + 2 * sum(a * b for a, b in zip(uv[u], iv[i], strict=True))
        logit += page_effect[page] - 0.15 * position
        clicked = rng.random() < _sigmoid(logit)
        iid = f"i{n:07d}"
        truth[iid] = int(clicked)
        base = {
            "task": "click",
            "request_id": f"r{n:07d}",
            "impression_id": iid,
            "user_id": f"u{u:04d}",
            "item_id": f"v{i:04d}",
            "position": position,
            "context": {"page": page},
            "impression_time_ms": t,
            "sparse": {"city": f"c{u % 5}"},
            "dense": {"u_ctr_7d": round(_sigmoid(ctr_logit + ub[u] + rng.gauss(0, 0.2)), 5)},
            "has_snapshot": True,
        }
        delay = None
        if clicked:
            r = rng.random()
            if r < beyond_fraction:
                delay = HORIZON_MS + 1000
            elif r < beyond_fraction + late_fraction:
                delay = int(math.exp(rng.uniform(math.log(WINDOW_MS + 1), math.log(HORIZON_MS))))
            else:
                delay = rng.randint(1000, WINDOW_MS)
        if delay is not None and delay <= WINDOW_MS:
            samples.append((t + delay, _sample(base, "POSITIVE", 1, t + delay, delay)))
            continue
        samples.append((t + WINDOW_MS, _sample(base, "NEGATIVE", 0, None, None)))
        if delay is not None and delay <= HORIZON_MS:
            samples.append((t + delay, _sample(base, "LATE_POSITIVE", 1, t + delay, delay)))
    samples.sort(key=lambda x: x[0])
    return [s for _, s in samples], truth


def _sample(
    base: dict[str, Any], attribution: str, label: int, label_time: int | None, delay: int | None
) -> dict[str, Any]:
    emit = label_time if label_time is not None else base["impression_time_ms"] + WINDOW_MS
    return {
        **base,
        "sample_id": f"{base['impression_id']}:click:{attribution}",
        "label": label,
        "attribution": attribution,
        "label_time_ms": label_time,
        "delay_ms": delay,
        "emit_time_ms": emit,
    }


def oracle_samples(samples: list[dict[str, Any]], truth: dict[str, int]) -> list[dict[str, Any]]:
    """One sample per impression with its true label (the LATE_POSITIVE duplicates dropped)."""
    out = []
    for s in samples:
        if s["attribution"] == "LATE_POSITIVE":
            continue
        label = truth[s["impression_id"]]
        out.append({**s, "label": label, "attribution": "POSITIVE" if label else "NEGATIVE"})
    return out


def online_split(
    samples: list[dict[str, Any]], truth: dict[str, int], test_fraction: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(what a live trainer has seen when the last training impression is served, in emission order;
    the later impressions with their true labels)."""
    times = sorted({s["impression_time_ms"] for s in samples})
    last = times[int(len(times) * (1.0 - test_fraction)) - 1]
    stream = sorted((s for s in samples if s["emit_time_ms"] <= last), key=lambda s: s["emit_time_ms"])
    test = oracle_samples([s for s in samples if s["impression_time_ms"] > last], truth)
    return stream, test


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
