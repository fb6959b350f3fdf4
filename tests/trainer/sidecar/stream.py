"""Sample streams for the sidecar tests: the synthetic click model of tests/trainer/synth.py, its
impressions spread over hours (so that, in emission order, positives, negatives and late positives
are mixed as in a live stream), optionally with labels turned corrupt from some point on."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth import START_MS, WINDOW_MS, make_samples


def stream(impressions: int, seed: int, spacing_ms: int = 10_000, **kwargs: Any) -> list[dict[str, Any]]:
    """Samples in emission order, one impression every ``spacing_ms``."""
    samples, _ = make_samples(impressions, seed=seed, **kwargs)
    out = []
    for s in samples:
        n = int(s["impression_id"][1:])
        t = START_MS + n * spacing_ms
        s = {**s, "impression_time_ms": t}
        if s["delay_ms"] is not None:
            s["label_time_ms"] = t + s["delay_ms"]
            s["emit_time_ms"] = s["label_time_ms"]
        else:
            s["emit_time_ms"] = t + WINDOW_MS
        out.append(s)
    out.sort(key=lambda s: s["emit_time_ms"])
    return out


def corrupt(samples: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The same samples with labels that are noise: each one a fair coin (attribution, times and
    sample_id kept consistent with the new label, so the records stay valid)."""
    rng = random.Random(seed)
    out = []
    for s in samples:
        label = int(rng.random() < 0.5)
        attribution = "POSITIVE" if label else "NEGATIVE"
        delay = None if not label else 1_000
        out.append(
            {
                **s,
                "impression_id": s["impression_id"] + "x",
                "sample_id": f"{s['impression_id']}x:click:{attribution}",
                "label": label,
                "attribution": attribution,
                "delay_ms": delay,
                "label_time_ms": None if delay is None else s["impression_time_ms"] + delay,
            }
        )
    return out
