"""The late-click delay distribution, and the weight of a LATE_POSITIVE in a stream younger than it.

Why a weight: a trainer reading the stream in emission order sees an impression's fake NEGATIVE at
once and its LATE_POSITIVE (PU's undo term) hours later. A stream that began ``A`` ms ago has received
only the late clicks with a delay up to ``A``, a share ``F(A)`` of them, so the undo terms arriving at
stream age ``A`` cover ``F(A)`` of the fake negatives emitted then. A LATE_POSITIVE emitted at stream
age ``A`` is weighted ``1 / F(A)``: it stands in for the late clicks still to come. The weight is a
function of the sample's own times (its emit time minus the stream start) and of the delay model, so
it does not depend on how partitions interleave or where batches are cut.

The delay model is a histogram of late delays in log-spaced bins up to the attribution horizon ``H``,
as a *rate*: late clicks per impression in each bin, each count divided by its exposure (the
impressions old enough to have shown a delay in that bin). Its sources, pooled:

- **history** (matured labels): what an offline ``fit`` over complete samples records (the day-level
  hot start; :meth:`DelayModel.record_history`), carried in its checkpoint and export. It gives the
  shape of every delay up to ``H``; the stream only sets its level where both overlap.
- **the stream**, censored, **per partition**: each impression is exposed to the delays it is old
  enough to have shown by its own partition's position. The join keys samples by impression, so an
  impression's NEGATIVE and its LATE_POSITIVE share a partition, and each partition is a censored
  stream of its own: a late click is counted, and its partition's exposures measured, up to that
  partition's ``frontier - lag`` (its largest emit time minus the largest lag seen inside it, where
  several writers fill one partition). Pooled over partitions, the counts and exposures stay
  consistent however far apart a backlog reads them (counting every partition up to the one frontier
  of the stream made a lagging partition look like missing clicks; counting up to the slowest one
  threw hours of delays away, and the weights of the last hours of a backlog came out ~10% low).

Bins no source has exposed enough (a cold stream younger than ``H``) are extrapolated: ``gamma`` fits
``log rate = a + b log d - d / tau`` to the observed bins by Poisson regression on the exposures (a
censored survival fit of the delay: power laws, uniform and exponential delays are all in this
family); ``log-flat`` (the earlier estimate) continues the log-density of the last observed factor of
e**2; ``blend`` (the default) takes the mean of their F. Nothing in a young stream tells how its
delays go on, so each rule is a guess: over 14 shapes (log-uniform, uniform and exponential of several
ranges, Weibull, log-normal, gamma, a spike mixture) at 8-12 h, F was off by 12.6% on average for
gamma (95% at worst: a uniform stopping at 12 h, whose flat tail it carries to H), 15.4% for log-flat
(53%: too light a tail on uniform delays, too heavy on exponential ones), 11.4% for the blend (55%);
at 2-6 h 27%, 32% and 25%. Once the stream is older than ``H``, ``F = 1``.

Pure numpy: the state is a few floats and small arrays, saved as JSON with checkpoints and exports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

LATE_POSITIVE_CODE = 2  # trainer.samples.LATE_POSITIVE, repeated to keep this module free of imports
MISSING = -1  # trainer.samples.MISSING_TIME

BINS = 48
MIN_DELAY_MS = 60_000.0  # lower edge of the histogram (1 min); bins are log-spaced up to the horizon
BUCKET_MS = 300_000  # impression times (exposure) and held-back emit times are counted per 5 minutes
OBSERVED_SHARE = 0.2  # a bin is observed once its exposure is this share of the best-exposed bin's
MIN_FIT_BINS = 4  # fewer observed bins holding late clicks: no estimate yet (the weight is the cap)
MAX_LAG_SHARE = 0.25  # the lag allowance is at most H / 4 (one stray old sample must not blind it)
TAIL_LOG_SPAN = 2.0  # log-flat: the log-density of the last e**2 factor of observed delays
FORMAT = 3
SCALARS = ("start_ms", "min_late_ms", "matured")
PARTITION_SCALARS = ("frontier_ms", "lag_ms", "first_impression_ms", "counted_ms")

Tail = Literal["blend", "gamma", "log-flat"]


def _ramp_integral(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """∫_0^x clip((s - lo) / (hi - lo), 0, 1) ds, elementwise (broadcast)."""
    width = hi - lo
    inside = np.clip(x - lo, 0.0, width)
    return inside * inside / (2.0 * width) + np.maximum(x - hi, 0.0)


def exposure(ages: np.ndarray, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray, spread: float) -> np.ndarray:
    """Per bin, the impressions exposed to it: ``counts[k]`` impressions of ages uniform in
    ``ages[k] ± spread / 2`` each count for the share of the bin's delays they are old enough for."""
    if len(ages) == 0:
        return np.zeros(len(lo))
    a = ages[:, None]
    if spread > 0:
        share = (_ramp_integral(a + spread / 2, lo, hi) - _ramp_integral(a - spread / 2, lo, hi)) / spread
    else:
        share = np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    return (counts[:, None] * share).sum(axis=0)


@dataclass
class CensoredPartition:
    """One partition's censored stream: where it stands, and what it has not counted yet."""

    frontier_ms: float = -math.inf  # largest emit time seen
    lag_ms: float = 0.0  # largest lag seen behind the frontier (several writers, one partition)
    first_impression_ms: float = math.inf  # earliest impression whose NEGATIVE/POSITIVE was seen
    counted_ms: float = -math.inf  # the time its counts and exposures stand at
    impressions: dict[int, float] = field(default_factory=dict)  # impression bucket -> count, until matured
    held: dict[int, np.ndarray] = field(default_factory=dict)  # emit bucket -> late clicks not counted yet

    def to_json(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in PARTITION_SCALARS},
            "impressions": {str(k): v for k, v in sorted(self.impressions.items())},
            "held": {str(k): _sparse(v) for k, v in sorted(self.held.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CensoredPartition:
        return cls(
            **{name: float(data[name]) for name in PARTITION_SCALARS},
            impressions={int(k): float(v) for k, v in data["impressions"].items()},
            held={int(k): _dense(v) for k, v in data["held"].items()},
        )


class DelayModel:
    """The delay distribution of late clicks (history + censored stream), and the stream's weights."""

    def __init__(
        self,
        horizon_ms: float,
        max_weight: float = 4.0,
        tail: Tail = "blend",
        learn_from_stream: bool = True,
    ):
        self.horizon_ms = float(horizon_ms)
        self.max_weight = float(max_weight)
        self.tail: Tail = tail
        self.learn_from_stream = learn_from_stream
        self.stream = True  # stream training (weights apply) vs shuffled epochs (every weight is 1)
        self.edges = np.exp(np.linspace(math.log(MIN_DELAY_MS), math.log(self.horizon_ms), BINS + 1))
        self.history_counts = np.zeros(BINS)
        self.history_exposure = np.zeros(BINS)
        self.reset_stream()

    def reset_stream(self) -> None:
        """Forget the stream's position and its censored counts (the history stays)."""
        self.start_ms = math.inf  # earliest impression time of any sample seen: the stream start
        self.min_late_ms = math.inf  # smallest late delay seen (the join's window)
        self.partitions: dict[int, CensoredPartition] = {}
        self.matured = 0.0  # impressions exposed to every delay (their buckets folded)
        self.stream_counts = np.zeros(BINS)  # late clicks counted (emitted by their partition's counted time)
        self._dirty = True
        self._rates: np.ndarray | None = None

    @property
    def frontier_ms(self) -> float:
        """The largest emit time seen on any partition."""
        return max((p.frontier_ms for p in self.partitions.values()), default=-math.inf)

    @property
    def lag_ms(self) -> float:
        """The largest lag seen inside a partition."""
        return max((p.lag_ms for p in self.partitions.values()), default=0.0)

    @property
    def has_history(self) -> bool:
        """Whether matured history is held (a shuffled fit's samples, a finished stream)."""
        return bool(self.history_counts.sum() > 0)

    # -- feeding -----------------------------------------------------------------------------------

    def set_stream(self, stream: bool) -> None:
        self.stream = bool(stream)

    def observe(
        self, times: dict[str, np.ndarray], attributions: np.ndarray, partitions: np.ndarray | None = None
    ) -> np.ndarray:
        """Each sample's weight (``1 / F(emit - start)`` on a LATE_POSITIVE in stream training, 1
        otherwise); in stream training the batch is folded into the estimate first. ``partitions``:
        each sample's input partition (None: one stream, as a file read in emission order)."""
        weights = np.ones(len(attributions), np.float32)
        if not self.stream:
            return weights
        impression, emit, delay = (
            np.asarray(times[k], np.float64) for k in ("impression_time_ms", "emit_time_ms", "delay_ms")
        )
        known = (impression != MISSING) & (emit != MISSING)
        if not known.any():
            return weights
        attributions = np.asarray(attributions)
        partition = np.zeros(len(attributions), np.int64) if partitions is None else np.asarray(partitions, np.int64)
        self.start_ms = min(self.start_ms, float(impression[known].min()))
        for p in np.unique(partition[known]).tolist():
            rows = known & (partition == p)
            self._fold(
                self.partitions.setdefault(p, CensoredPartition()),
                impression[rows],
                emit[rows],
                delay[rows],
                attributions[rows],
            )
        self._dirty = self._dirty or self.learn_from_stream  # with the history only, the estimate stands
        late = known & (attributions == LATE_POSITIVE_CODE)
        if late.any():
            arrived = self.arrived_fraction(emit[late] - self.start_ms)
            weights[late] = 1.0 / np.maximum(arrived, 1.0 / self.max_weight)
        return weights

    def _fold(
        self,
        part: CensoredPartition,
        impression: np.ndarray,
        emit: np.ndarray,
        delay: np.ndarray,
        attribution: np.ndarray,
    ) -> None:
        running = np.maximum.accumulate(np.concatenate([[part.frontier_ms], emit]))
        behind = float(np.max(running[:-1] - emit))  # -inf for a first sample
        if behind > part.lag_ms:
            part.lag_ms = min(behind, MAX_LAG_SHARE * self.horizon_ms)
        part.frontier_ms = float(running[-1])
        if not self.learn_from_stream:
            return
        late = (attribution == LATE_POSITIVE_CODE) & (delay != MISSING)
        shown = attribution != LATE_POSITIVE_CODE
        if shown.any():
            part.first_impression_ms = min(part.first_impression_ms, float(impression[shown].min()))
            buckets, counts = np.unique(np.floor(impression[shown] / BUCKET_MS).astype(np.int64), return_counts=True)
            for bucket, count in zip(buckets.tolist(), counts.tolist(), strict=True):
                part.impressions[bucket] = part.impressions.get(bucket, 0.0) + count
        # A late click counts only for an impression whose NEGATIVE this partition has shown (emitted
        # that first): late clicks of earlier impressions have no exposure here.
        late &= impression >= part.first_impression_ms
        if late.any():
            self.min_late_ms = min(self.min_late_ms, float(delay[late].min()))
            bins = np.clip(np.searchsorted(self.edges, delay[late], side="right") - 1, 0, BINS - 1)
            held = np.floor(emit[late] / BUCKET_MS).astype(np.int64)
            for bucket in np.unique(held).tolist():
                row = part.held.setdefault(bucket, np.zeros(BINS))
                row += np.bincount(bins[held == bucket], minlength=BINS)
        self._advance(part)

    def _advance(self, part: CensoredPartition) -> None:
        """Count the partition's late clicks emitted by its ``frontier - lag`` (whole buckets), fold its
        matured impressions."""
        counted = math.floor((part.frontier_ms - part.lag_ms) / BUCKET_MS) * BUCKET_MS
        if counted <= part.counted_ms:
            return
        part.counted_ms = float(counted)
        for bucket in [b for b in part.held if (b + 1) * BUCKET_MS <= counted]:
            self.stream_counts += part.held.pop(bucket)
        matured = counted - self.horizon_ms
        for bucket in [b for b in part.impressions if (b + 1) * BUCKET_MS <= matured]:
            self.matured += part.impressions.pop(bucket)

    def record_history(self, times: dict[str, np.ndarray], attributions: np.ndarray) -> None:
        """Add a file of samples with matured labels (what an offline fit trains on) to the history.

        Exposure is measured at the file's largest emit time: for a file of complete labels that is
        past every impression's clicks that it holds; for a dump of a topic cut at some time, at the
        cut. Whatever the model had learnt from a stream joins the history first (a shuffled fit is
        at no stream position: its export starts the next stream afresh)."""
        self.new_stream()
        impression, emit, delay = (
            np.asarray(times[k], np.float64) for k in ("impression_time_ms", "emit_time_ms", "delay_ms")
        )
        attributions = np.asarray(attributions)
        known = (impression != MISSING) & (emit != MISSING)
        late = known & (attributions == LATE_POSITIVE_CODE) & (delay != MISSING)
        shown = known & (attributions != LATE_POSITIVE_CODE)
        if not shown.any():
            return
        end = float(emit[known].max())
        ages = end - impression[shown]
        minutes = np.floor(ages / 60_000.0)
        values, counts = np.unique(minutes, return_counts=True)
        lo, hi = self.edges[:-1], self.edges[1:]
        self.history_exposure += exposure((values + 0.5) * 60_000.0, counts.astype(np.float64), lo, hi, 60_000.0)
        bins = np.clip(np.searchsorted(self.edges, delay[late], side="right") - 1, 0, BINS - 1)
        self.history_counts += np.bincount(bins, minlength=BINS)
        self._dirty = True

    def new_stream(self) -> None:
        """Start another stream: what this one has counted (consistent counts and exposures) joins
        the history, its position is forgotten."""
        counts, stream_exposure = self.stream_counts, self._stream_exposure()
        if counts.sum() > 0:
            self.history_counts += counts
            self.history_exposure += stream_exposure
        self.reset_stream()

    def continue_stream(self, previous: DelayModel) -> None:
        """Take over another model's stream position and censored counts, keeping this one's history
        (a state replaced mid-stream, e.g. by a newer offline model, goes on with the same stream)."""
        history = (self.history_counts, self.history_exposure)
        self.load_json(previous.to_json())
        self.history_counts, self.history_exposure = history

    # -- the estimate ------------------------------------------------------------------------------

    def _stream_exposure(self) -> np.ndarray:
        """Per bin, the impressions exposed to it, each at its own partition's counted time."""
        ages, counts = [], []
        for part in self.partitions.values():
            if part.impressions and math.isfinite(part.counted_ms):
                buckets = np.fromiter(part.impressions.keys(), np.float64)
                ages.append(part.counted_ms - (buckets + 0.5) * BUCKET_MS)
                counts.append(np.fromiter(part.impressions.values(), np.float64))
        if not ages:
            return np.full(BINS, self.matured)
        lo, hi = self.edges[:-1], self.edges[1:]
        return self.matured + exposure(np.concatenate(ages), np.concatenate(counts), lo, hi, float(BUCKET_MS))

    def rates(self) -> np.ndarray | None:
        """Late clicks per impression in each bin (observed or extrapolated); None: no estimate yet.

        A function of the state (re-estimated after a change: a fraction of a millisecond), so a state
        restored from a checkpoint weighs the next samples exactly as the one that saved it."""
        if self._dirty:
            self._rates = self._estimate()
            self._dirty = False
        return self._rates

    def _estimate(self) -> np.ndarray | None:
        stream_counts, stream_exposure = self.stream_counts, self._stream_exposure()
        counts, exposed = stream_counts.copy(), stream_exposure.copy()
        if self.history_exposure.max() > 0:
            history_rates = self.history_counts / np.maximum(self.history_exposure, 1e-12)
            # The history gives the shape; its level is scaled to the stream's where the stream has
            # shown clicks (a stream whose click rate moved keeps its own level, so F is unchanged).
            expected = float((history_rates * stream_exposure).sum())
            level = (stream_counts.sum() + 1.0) / (expected + 1.0) if expected > 0 else 1.0
            counts += level * self.history_counts
            exposed += self.history_exposure
        hi = self.edges[1:]
        floor = self.min_late_ms if math.isfinite(self.min_late_ms) else 0.0
        support = hi > floor
        if exposed.max() <= 0:
            return None
        observed = support & (exposed >= OBSERVED_SHARE * exposed[support].max())
        rates = np.where(observed, counts / np.maximum(exposed, 1e-12), 0.0)
        if np.count_nonzero(observed & (counts > 0)) < MIN_FIT_BINS and not (observed == support).all():
            return None
        missing = support & ~observed
        if not missing.any():
            return rates
        tails = ("gamma", "log-flat") if self.tail == "blend" else (self.tail,)
        shares = []
        for tail in tails:
            extrapolated = self._extrapolate(tail, counts, exposed, observed, rates)
            if extrapolated is None:
                continue
            full = np.where(missing, extrapolated, rates)
            shares.append(full / full.sum())
        # blend: the mean of the two shapes, so the mean of their F (neither is right on every shape)
        return np.mean(shares, axis=0) if shares else None

    def _extrapolate(
        self, tail: str, counts: np.ndarray, exposed: np.ndarray, observed: np.ndarray, rates: np.ndarray
    ) -> np.ndarray | None:
        lo, hi = self.edges[:-1], self.edges[1:]
        if tail == "log-flat":
            usable = np.flatnonzero(observed & (counts > 0))
            reached = hi[np.flatnonzero(observed)[-1]]
            start = max(reached * math.exp(-TAIL_LOG_SPAN), float(lo[usable[0]]))
            recent = observed & (lo >= start)
            span = math.log(reached / start)
            if span <= 0:
                span, recent = math.log(reached / lo[usable[0]]), observed
            level = float(rates[recent].sum()) / span
            return level * np.log(hi / lo)
        return gamma_tail(counts, exposed, observed, lo, hi)

    def arrived_fraction(self, ages: np.ndarray | float) -> np.ndarray:
        """F(age): the share of the late clicks (delay up to H) with a delay up to ``age``; 1 from H on,
        ``1 / max_weight`` while there is no estimate yet."""
        ages = np.asarray(ages, np.float64)
        rates = self.rates()
        if rates is None or rates.sum() <= 0:
            return np.where(ages >= self.horizon_ms, 1.0, 1.0 / self.max_weight)
        cumulative = np.concatenate([[0.0], np.cumsum(rates)]) / rates.sum()
        return np.interp(ages, self.edges, cumulative, left=0.0, right=1.0)

    # -- persistence -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "history_counts": self.history_counts.tolist(),
            "history_exposure": self.history_exposure.tolist(),
            "start_ms": self.start_ms,
            "min_late_ms": self.min_late_ms,
            "matured": self.matured,
            "stream_counts": self.stream_counts.tolist(),
            "partitions": {str(k): part.to_json() for k, part in sorted(self.partitions.items())},
        }

    def load_json(self, data: dict[str, Any]) -> None:
        """Restore :meth:`to_json`'s output. Format 2 (one stream, before partitions) goes on as
        partition 0; an earlier format (no history, no exposures) starts afresh."""
        self.history_counts = np.zeros(BINS)
        self.history_exposure = np.zeros(BINS)
        self.reset_stream()
        if data.get("format") not in (FORMAT, 2):
            return
        self.history_counts = np.asarray(data["history_counts"], np.float64).reshape(BINS)
        self.history_exposure = np.asarray(data["history_exposure"], np.float64).reshape(BINS)
        for name in SCALARS:
            setattr(self, name, float(data[name]))
        self.stream_counts = np.asarray(data["stream_counts"], np.float64).reshape(BINS)
        partitions = data["partitions"] if data["format"] == FORMAT else {"0": data}
        self.partitions = {int(k): CensoredPartition.from_json(v) for k, v in partitions.items()}
        self._dirty = True


def _sparse(row: np.ndarray) -> dict[str, float]:
    return {str(i): float(row[i]) for i in np.flatnonzero(row)}


def _dense(data: dict[str, float]) -> np.ndarray:
    row = np.zeros(BINS)
    for i, value in data.items():
        row[int(i)] = value
    return row


def gamma_tail(
    counts: np.ndarray, exposed: np.ndarray, fit: np.ndarray, lo: np.ndarray, hi: np.ndarray, ridge: float = 1e-3
) -> np.ndarray | None:
    """Per-bin rates of ``log rate density = a + b log d - c d`` (c >= 0), fitted by Poisson regression
    (Newton's method) to ``counts`` over ``exposed`` on the bins ``fit``; None if it does not converge."""
    hour = 3_600_000.0
    mid = np.sqrt(lo * hi)
    width = (hi - lo) / hour
    fit = fit & (exposed > 0)
    features = [np.ones(BINS), np.log(mid / hour), mid / hour]
    for columns in (3, 2):
        x = np.stack(features[:columns], axis=1)
        offset = np.log(np.maximum(exposed[fit] * width[fit], 1e-300))
        beta = np.zeros(columns)
        beta[0] = math.log(max(float(counts[fit].sum()), 0.5) / float(np.exp(offset).sum()))
        penalty = ridge * np.diag([0.0] + [1.0] * (columns - 1))
        for _ in range(100):
            mu = np.exp(np.clip(offset + x[fit] @ beta, -700, 700))
            gradient = x[fit].T @ (counts[fit] - mu) - penalty @ beta
            hessian = x[fit].T @ (mu[:, None] * x[fit]) + penalty
            try:
                step = np.linalg.solve(hessian, gradient)
            except np.linalg.LinAlgError:
                return None
            beta = beta + step
            if float(np.abs(step).max()) < 1e-9:
                break
        if not np.all(np.isfinite(beta)):
            return None
        if columns == 3 and beta[2] > 0:  # a density growing exponentially in the delay: fit a power law
            continue
        return np.exp(np.clip(x @ beta, -700, 700)) * width
    return None
