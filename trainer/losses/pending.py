"""Clicks still to come: how much of the late-click mass a live stream has delivered so far.

A trainer reading the stream in emission order sees an impression's fake NEGATIVE at once and its
LATE_POSITIVE hours later. In steady state the LATE_POSITIVEs arriving now (for older impressions)
balance the fake NEGATIVEs emitted now, and PU's undo term is right on average. A stream that began
``A`` ms ago is not there yet: only the late clicks with a delay below ``A`` can have arrived, a
fraction ``F(A)`` of them, so the undo terms arriving now cover ``F(A)`` of the fake negatives emitted
now. Weighting the live LATE_POSITIVEs by ``1 / F(A)`` restores the balance (the clicks still to come
are stood in for by the ones that came).

``F`` is estimated from the stream itself: a histogram of the LATE_POSITIVEs' delays in log-spaced
bins, each count divided by its exposure (the span of impression time old enough to have shown that
delay, ``A - d``: a constant impression rate is assumed); the delays not observable yet (between the
largest well-exposed bin and the attribution horizon) are extrapolated at the log-density of the last
observed factor of e**2. Once the stream is older than the horizon nothing is extrapolated and
``F(A) = 1``: plain PU.

The state is a few Python floats and a numpy histogram, saved with the checkpoint as a Python-state
dependency (eager ``tf.Variable`` reads and writes, ten a batch, each handing the GIL to the sidecar's
poller, cost more than the estimate itself). It is fed by the samples' own times
(``impression_time_ms``, ``emit_time_ms``, ``delay_ms``), so an offline ``fit --order stream`` and the
streaming sidecar get the same weights through the same train step. A sample emitted well before the
stream time (offline shuffled epochs, where NEGATIVE and LATE_POSITIVE share a batch) is not live: its
weight stays 1.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import tensorflow as tf

from trainer.samples import LATE_POSITIVE, MISSING_TIME, NEGATIVE

BINS = 48
MIN_DELAY_MS = 60_000.0  # lower edge of the histogram (1 min); bins are log-spaced up to the horizon
TAIL_LOG_SPAN = 2.0  # the extrapolated log-density is the one of the last e**2 factor of observed delays


class PendingClicks(tf.train.experimental.PythonState):
    """Stream time, stream start and the late-delay histogram; :meth:`observe` per batch."""

    def __init__(self, horizon_ms: float, max_weight: float):
        self.horizon_ms = float(horizon_ms)
        self.max_weight = float(max_weight)
        self.edges = np.exp(np.linspace(math.log(MIN_DELAY_MS), math.log(self.horizon_ms), BINS + 1))
        self.start_ms = math.inf
        self.stream_ms = -math.inf
        self.window_ms = math.inf
        self.late_counts = np.zeros(BINS, np.float64)

    def observe(self, times: dict[str, np.ndarray], attributions: np.ndarray) -> np.ndarray:
        """Fold a batch into the estimate; returns each sample's weight (1 unless a live LATE_POSITIVE)."""
        impression, emit, delay = (
            np.asarray(times[k], np.float64) for k in ("impression_time_ms", "emit_time_ms", "delay_ms")
        )
        weights = np.ones(len(attributions), np.float32)
        known = (impression != MISSING_TIME) & (emit != MISSING_TIME)
        if not known.any():
            return weights
        previous = self.stream_ms
        self.start_ms = min(self.start_ms, float(impression[known].min()))
        self.stream_ms = max(previous, float(emit[known].max()))
        negatives = known & (attributions == NEGATIVE)
        if negatives.any():
            self.window_ms = min(self.window_ms, float((emit - impression)[negatives].min()))
        late = known & (attributions == LATE_POSITIVE) & (delay != MISSING_TIME)
        if late.any():
            bins = np.clip(np.searchsorted(self.edges, delay[late], side="right") - 1, 0, BINS - 1)
            self.late_counts += np.bincount(bins, minlength=BINS)
            window = self.window_ms
            live = late & (emit >= max(previous, float(emit[known].min())) - (window if math.isfinite(window) else 0.0))
            weights[live] = 1.0 / max(self.arrived_fraction(), 1.0 / self.max_weight)
        return weights

    def age_ms(self) -> float:
        return self.stream_ms - self.start_ms

    def arrived_fraction(self) -> float:
        """F(A): the share of the late clicks (delay up to the horizon) with a delay below the stream's age."""
        age = self.age_ms()
        if not math.isfinite(age) or age >= self.horizon_ms:
            return 1.0
        counts = self.late_counts
        lower, upper = self.edges[:-1], self.edges[1:]
        # Bins whose delays every impression of the older half of the stream could have shown.
        usable = (upper <= age / 2.0) & (counts > 0)
        if not usable.any():
            return 1.0 / self.max_weight
        last = int(np.flatnonzero(usable)[-1])
        density = counts[: last + 1] / (age - 0.5 * (lower[: last + 1] + upper[: last + 1]))
        observed = float(density.sum())
        reached = upper[last]
        tail_start = max(reached * math.exp(-TAIL_LOG_SPAN), float(lower[np.flatnonzero(usable)[0]]))
        in_tail = lower[: last + 1] >= tail_start
        span = math.log(reached / tail_start)
        level = float(density[in_tail].sum()) / span if span > 0 else observed / math.log(reached / lower[0])
        # The partly exposed delays up to the age count as observed in expectation: F covers (W, age].
        arrived = observed + level * math.log(age / reached)
        total = observed + level * math.log(self.horizon_ms / reached)
        return min(1.0, arrived / total) if total > 0 else 1.0

    def to_json(self) -> dict[str, object]:
        return {
            "start_ms": self.start_ms,
            "stream_ms": self.stream_ms,
            "window_ms": self.window_ms,
            "late_counts": self.late_counts.tolist(),
        }

    def load_json(self, data: dict[str, object]) -> None:
        self.start_ms = float(data["start_ms"])  # type: ignore[arg-type]
        self.stream_ms = float(data["stream_ms"])  # type: ignore[arg-type]
        self.window_ms = float(data["window_ms"])  # type: ignore[arg-type]
        self.late_counts = np.asarray(data["late_counts"], np.float64).reshape(BINS)

    # tf.train.Checkpoint hooks: the state as one JSON string.
    def serialize(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    def deserialize(self, string_value: Any) -> None:
        text = string_value.decode() if isinstance(string_value, bytes) else str(string_value)
        self.load_json(json.loads(text))
