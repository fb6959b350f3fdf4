"""Data checks: the stream's statistics over what a candidate trained on, against the current version's.

A paired model-vs-model test cannot see every corruption: flipped labels and a shift of the click rate
move both models' evidence alike, a join that drops every late positive changes the labels themselves,
and a version trained on such data can look no worse than the one it replaces. So the stream is
measured too, and a version trained on data that fails is refused (or, already current, rolled back):

* per **block** of ``block`` samples in arrival order: the share of LATE_POSITIVEs; over its first
  samples (POSITIVE / NEGATIVE, one per impression) the early click rate (POSITIVEs among them: in
  arrival order a NEGATIVE comes a window after its impression and a POSITIVE within it, which in a
  steady stream balances), each feature's missing rate, distinct share (among its first 500 present
  values: the share depends on the count) and top-value share, and the AUC of the progressive scores
  against the early labels (how predictable the labels are from the features: features shuffled
  across samples keep every marginal but lose this).

Blocks that start within the first window of the stream (POSITIVEs only, the features of clickers)
are neither checked nor used as a reference, nor is the click rate of a block closed while
impressions stopped (the last window of a bounded stream holds NEGATIVEs only): a block's click rate
counts once an impression newer than its last sample has arrived, proof that impressions went on
through it. The window is the join's, as
NEGATIVEs show it (emit time - impression time). A lagging partition changes nothing: each
partition's samples still come in their own emission order. A version's reference
(:meth:`StreamStats.reference`) is the last ``reference_blocks`` blocks it trained on, recorded in
its registry record. The late-positive share, the click rate and the AUC, weak signals per block, are
tested on every suffix of the span pooled (the newest blocks first), the feature statistics per
block; every test is one-sided against a tolerance at ``confidence``. A failure also says from which
sample on the data is suspect (one block before the first failing one, since a corruption that began
inside a block may not fail it).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.config import DataChecks
from trainer.samples import LATE_POSITIVE, MISSING_TIME, NEGATIVE
from trainer.sidecar.stats import auc_with_se, one_sided_p, proportion_se

if TYPE_CHECKING:
    from trainer.samples import Sample

GROUPS = ("context", "sparse", "dense")
MIN_PRESENT = 20  # fewer present values in a block: its distinct and top-value shares are not tested
DISTINCT_OF = 500  # the distinct share counts the first this many present values of a block (a quarter of a
# smaller block): the share of distinct values depends on how many are counted
FEATURE_STATS = ("missing_rate", "distinct_share", "top_share")


@dataclass
class Block:
    start: int  # distinct samples trained before its first sample
    end: int  # ... after its last
    first_emit_ms: int
    last_emit_ms: int
    samples: int
    late: int
    first: int  # first samples (one per impression)
    clicks: int  # POSITIVEs among them
    warmup: bool  # began within the stream's first window
    features: dict[str, list[float | None]]  # name -> [missing rate, distinct share, top share]
    auc: list[float] | None  # [AUC, standard error] of the progressive scores on the early labels

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Open:
    """The block being filled."""

    start: int
    first_emit_ms: int = MISSING_TIME
    last_emit_ms: int = MISSING_TIME
    samples: int = 0
    late: int = 0
    first: int = 0
    clicks: int = 0
    counts: dict[str, Counter[Any]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    head: dict[str, set[Any]] = field(default_factory=dict)  # distinct among the first present values
    head_seen: dict[str, int] = field(default_factory=dict)
    scores: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)


class StreamStats:
    """Blocks of the stream's statistics, fed by every trained batch; saved with the checkpoint (the
    block being filled is not: after a restart the next block starts afresh)."""

    def __init__(self, config: DataChecks):
        self.config = config
        self.blocks: deque[Block] = deque(maxlen=config.history_blocks)
        self.known: dict[str, set[str]] = {g: set() for g in GROUPS}
        self.clock = {"start": MISSING_TIME, "stream": MISSING_TIME, "window": MISSING_TIME,
                      "impression": MISSING_TIME}  # first and last emit time, the join's window, newest impression
        self._open: _Open | None = None
        self.distinct_of = min(DISTINCT_OF, config.block // 4)
        self.closed = 0  # blocks closed by this process (the rollback's evaluation windows)
        self.trained = 0  # distinct samples trained (the index after the last one folded in)
        self._rows: tuple[Any, dict[int, list[dict[str, Any]]]] = (None, {})  # a reference's per-block rows

    # -- feeding -----------------------------------------------------------------------------------

    def add(self, samples: Sequence[Sample], times: dict[str, np.ndarray], progressive: np.ndarray,
            first_index: int) -> list[Block]:
        """Fold a trained batch in (``times``: its event-time columns); the blocks it closed."""
        self.trained = first_index + len(samples)
        self._tick(samples, times)
        closed = []
        emit_ms = times["emit_time_ms"]
        taken, size = 0, self.config.block
        while taken < len(samples):
            block = self._open or _Open(start=first_index + taken)
            n = min(size - block.samples, len(samples) - taken)
            self._fold(block, samples[taken : taken + n], emit_ms[taken : taken + n], progressive[taken : taken + n])
            taken += n
            self._open = block
            if block.samples >= size:
                closed.append(self._close(block, first_index + taken))
        return closed

    def _tick(self, samples: Sequence[Sample], times: dict[str, np.ndarray]) -> None:
        """The clocks: stream start and time, the join's window (from NEGATIVEs), the newest impression."""
        emit, impression = times["emit_time_ms"], times["impression_time_ms"]
        clock = self.clock
        timed = emit[emit != MISSING_TIME]
        if timed.size:
            clock["stream"] = max(clock["stream"], int(timed.max()))
            low = int(timed.min())
            clock["start"] = low if clock["start"] == MISSING_TIME else min(clock["start"], low)
        attribution = np.fromiter((s.attribution for s in samples), np.int8, len(samples))
        negative = (attribution == NEGATIVE) & (emit != MISSING_TIME) & (impression != MISSING_TIME)
        if negative.any():
            clock["window"] = max(clock["window"], int((emit - impression)[negative].max()))
        first = (attribution != LATE_POSITIVE) & (impression != MISSING_TIME)
        if first.any():
            clock["impression"] = max(clock["impression"], int(impression[first].max()))

    def _fold(self, block: _Open, samples: Sequence[Sample], emit_ms: np.ndarray, scores: np.ndarray) -> None:
        if emit_ms.size:
            if block.first_emit_ms == MISSING_TIME:
                block.first_emit_ms = int(emit_ms[0])
            block.last_emit_ms = max(block.last_emit_ms, int(emit_ms.max()))
        block.samples += len(samples)
        first_rows = [i for i, s in enumerate(samples) if s.attribution != LATE_POSITIVE]
        block.late += len(samples) - len(first_rows)
        if not first_rows:
            return
        firsts = [samples[i] for i in first_rows]
        block.first += len(firsts)
        labels = np.fromiter((s.label for s in firsts), np.float64, len(firsts))
        block.clicks += int(labels.sum())
        block.scores.append(np.asarray(scores, np.float64)[first_rows])
        block.labels.append(labels)
        for name, values in self._values(firsts):
            block.counts.setdefault(name, Counter()).update(values)
            block.missing[name] = block.missing.get(name, 0) + values.count(None)
            seen = block.head_seen.get(name, 0)
            if seen < self.distinct_of:
                present = [v for v in values if v is not None][: self.distinct_of - seen]
                block.head.setdefault(name, set()).update(present)
                block.head_seen[name] = seen + len(present)

    def _values(self, firsts: list[Sample]) -> Iterable[tuple[str, list[Any]]]:
        yield "user_id", [s.user_id or None for s in firsts]
        yield "item_id", [s.item_id or None for s in firsts]
        yield "position", [s.position for s in firsts]
        for group in GROUPS:
            known = self.known[group]
            maps = [getattr(s, group) for s in firsts]
            known.update(*maps)
            for key in sorted(known):
                if group == "dense":
                    yield f"{group}.{key}", [m.get(key) for m in maps]
                else:  # an empty string is a missing value
                    yield f"{group}.{key}", [m.get(key) or None for m in maps]

    def _close(self, block: _Open, end: int) -> Block:
        self._open = None
        features: dict[str, list[float | None]] = {}
        for name, counts in block.counts.items():
            seen = sum(counts.values())  # a key first seen mid-block counts from then on
            missing = block.missing.get(name, 0)
            present = seen - missing
            counts.pop(None, None)
            top = max(counts.values()) if counts else 0
            head = block.head_seen.get(name, 0)
            features[name] = [
                missing / seen,
                len(block.head.get(name, ())) / head if head >= self.distinct_of else None,
                top / present if present >= MIN_PRESENT else None,
            ]
        auc = None
        if block.labels:
            found = auc_with_se(np.concatenate(block.labels), np.concatenate(block.scores))
            auc = None if found is None else [found[0], found[1]]
        clock = self.clock
        window = clock["window"]
        warmup = window == MISSING_TIME or block.first_emit_ms == MISSING_TIME or (
            block.first_emit_ms < clock["start"] + window
        )
        done = Block(block.start, end, block.first_emit_ms, block.last_emit_ms, block.samples, block.late,
                     block.first, block.clicks, warmup, features, auc)
        self.blocks.append(done)
        self.closed += 1
        return done

    def _rated(self, blocks: list[Block]) -> list[Block]:
        """The blocks whose click rate counts: impressions went on through them (one newer than their
        last sample has arrived), and enough first samples."""
        newest = self.clock["impression"]
        return [b for b in blocks if b.last_emit_ms <= newest and b.first >= MIN_PRESENT]

    # -- a version's reference ---------------------------------------------------------------------

    def reference(self, until: int) -> dict[str, Any]:
        """The statistics a version trained on up to ``until`` samples is recorded with."""
        k = self.config.reference_blocks
        blocks = [b for b in self.blocks if b.end <= until and not b.warmup][-k:]
        rated = self._rated(blocks)
        features: dict[str, dict[str, list[float]]] = {}
        names = {name for b in blocks for name in b.features}
        for name in sorted(names):
            per_stat: dict[str, list[float]] = {}
            for i, stat in enumerate(FEATURE_STATS):
                got = (b.features.get(name) for b in blocks)
                values = [float(x) for v in got if v is not None and (x := v[i]) is not None]
                if values:  # median and scaled MAD: one or two odd blocks move neither
                    median = float(np.median(values))
                    per_stat[stat] = [median, 1.4826 * float(np.median(np.abs(np.subtract(values, median))))]
            features[name] = per_stat
        aucs = [b.auc for b in blocks if b.auc is not None]
        return {
            "until": until,
            "blocks": len(blocks),
            "samples": sum(b.samples for b in blocks),
            "late": sum(b.late for b in blocks),
            "first": sum(b.first for b in rated),
            "clicks": sum(b.clicks for b in rated),
            "auc": [float(np.median([a[0] for a in aucs])), math.sqrt(sum(a[1] ** 2 for a in aucs)) / len(aucs)]
            if aucs
            else None,
            "features": features,
        }

    # -- the checks --------------------------------------------------------------------------------

    def check(self, since: int, reference: dict[str, Any] | None) -> dict[str, Any]:
        """The data checks of the samples after ``since`` against ``reference``: one row per check and
        feature (its worst block), the failures, and ``suspect_from``: the sample index from which the
        data is suspect (None when nothing failed)."""
        blocks = [b for b in self.blocks if b.end > since]
        span = {"since": since, "blocks": len(blocks)}
        if not self.config.enabled or not reference or not reference.get("blocks"):
            return {"span": span, "checks": [], "failures": [], "suspect_from": None,
                    "skipped": "disabled" if not self.config.enabled else "no reference statistics yet"}
        checker = _Checker(self.config, reference)
        key = (reference["until"], reference["blocks"], reference["samples"])
        if self._rows[0] != key:  # per-block rows depend on the block and the reference only: kept
            self._rows = (key, {})
        cached = self._rows[1]
        for b in blocks:
            if not b.warmup:
                if b.start not in cached:
                    cached[b.start] = checker.block(b)
                checker.rows += cached[b.start]
        checked = [b for b in blocks if not b.warmup]
        checker.late_share(checked)
        checker.label_auc(checked)
        checker.click_rate(self._rated(checked))
        failures = [r for r in checker.rows if not r["passed"]]
        suspect = None
        if failures:
            suspect = max(0, min(int(r["start"]) for r in failures) - self.config.block)
        return {"span": span, "checks": checker.summary(), "failures": failures, "suspect_from": suspect}

    # -- saved with the checkpoint -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "blocks": [b.to_json() for b in self.blocks],
            "known": {g: sorted(keys) for g, keys in self.known.items()},
            "clock": self.clock,
            "trained": self.trained,
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.blocks.clear()
        self.blocks.extend(Block(**b) for b in data["blocks"])
        self.known = {g: set(data["known"].get(g, ())) for g in GROUPS}
        self.clock = {k: int(v) for k, v in data["clock"].items()}
        self.trained = int(data.get("trained", 0))
        self._open = None


class _Checker:
    """The tests of one span against one reference; rows of results."""

    def __init__(self, config: DataChecks, reference: dict[str, Any]):
        self.config = config
        self.ref = reference
        self.alpha = 1.0 - config.confidence
        self.rows: list[dict[str, Any]] = []

    def _row(self, check: str, feature: str | None, value: float, reference: float, tolerance: float, p: float,
             start: int) -> dict[str, Any]:
        return {"check": check, "feature": feature, "value": round(value, 6), "reference": round(reference, 6),
                "tolerance": tolerance, "p_value": p, "passed": p >= self.alpha, "start": start}

    def block(self, b: Block) -> list[dict[str, Any]]:
        """Each feature's statistics in one block (strong signals: a constant or missing feature)."""
        c = self.config
        rows: list[dict[str, Any]] = []
        if b.first < MIN_PRESENT:  # the tail of a bounded stream: LATE_POSITIVEs only
            return rows
        for name, ref in self.ref["features"].items():
            got = b.features.get(name, [1.0, None, None])  # a feature never seen in the block: missing
            for i, stat in enumerate(FEATURE_STATS):
                value, mean_sd = got[i], ref.get(stat)
                if value is None or mean_sd is None:
                    continue
                mean, sd = mean_sd
                if stat == "distinct_share":
                    if c.distinct_share_ratio is None or mean <= 0 or value <= 0:
                        continue
                    gap, tol = abs(math.log(value / mean)), math.log(c.distinct_share_ratio)
                    se = max(sd / mean, 0.02)
                else:
                    tol_or_none = c.missing_rate_change if stat == "missing_rate" else c.top_share_change
                    if tol_or_none is None:
                        continue
                    gap, tol = abs(value - mean), tol_or_none
                    n = b.first if stat == "missing_rate" else max(1.0, b.first * (1.0 - (got[0] or 0.0)))
                    se = math.sqrt(max(mean * (1 - mean), 1e-4) / n + sd**2)
                rows.append(self._row(stat, name, value, mean, tol, one_sided_p(gap, se, tol, "above"), b.start))
        return rows

    def _scan(self, check: str, units: Sequence[Any], reference: float, tolerance: float,
              fold: Callable[[Any], tuple[float, float]]) -> None:
        """Test every suffix of ``units`` pooled, newest first (weak signals gain power as the span
        grows); ``fold(unit)`` adds one unit and returns (value, p-value) of the suffix so far. The row
        keeps the smallest p-value and, when it fails, the start of the longest failing suffix."""
        worst: tuple[float, float, int] | None = None
        for unit in reversed(units):
            value, p = fold(unit)
            if worst is None or p < worst[1] or (p < self.alpha and worst[1] < self.alpha):
                worst = (value, min(p, worst[1]) if worst else p, unit.start)
        if worst is not None:
            self.rows.append(self._row(check, None, worst[0], reference, tolerance, worst[1], worst[2]))

    def late_share(self, blocks: list[Block]) -> None:
        """LATE_POSITIVEs per sample: one-sided, below ``late_share_ratio`` x the reference's (bursts
        only raise it; a join that drops late positives sends it to 0)."""
        ratio, ref = self.config.late_share_ratio, self.ref
        if ratio is None or not ref["samples"] or not ref["late"]:
            return
        bound = ratio * ref["late"] / ref["samples"]
        acc = [0, 0]

        def fold(b: Block) -> tuple[float, float]:
            acc[0], acc[1] = acc[0] + b.late, acc[1] + b.samples
            share = acc[0] / acc[1]
            return share, one_sided_p(share, math.sqrt(bound * (1 - bound) / acc[1]), bound, "below")

        self._scan("late_share", blocks, ref["late"] / ref["samples"], ratio, fold)

    def click_rate(self, blocks: list[Block]) -> None:
        """The early click rate (POSITIVEs among first samples), either way, beyond ``click_rate_change``
        (relative)."""
        change, ref = self.config.click_rate_change, self.ref
        if change is None or not ref["first"]:
            return
        ref_k, ref_n = ref["clicks"], ref["first"]
        rate = ref_k / ref_n
        acc = [0, 0]

        def fold(b: Block) -> tuple[float, float]:
            acc[0], acc[1] = acc[0] + b.clicks, acc[1] + b.first
            got = acc[0] / acc[1]
            se = proportion_se(acc[0], acc[1], ref_k, ref_n)
            return got, one_sided_p(abs(got - rate), se, change * rate, "above")

        self._scan("click_rate", blocks, rate, change, fold)

    def label_auc(self, blocks: list[Block]) -> None:
        """The mean AUC of the progressive scores on the early labels, one-sided, more than ``auc_drop``
        below the reference's."""
        drop, ref = self.config.auc_drop, self.ref.get("auc")
        if drop is None or not ref:
            return
        scored = [b for b in blocks if b.auc is not None and b.first >= MIN_PRESENT]
        acc = [0.0, 0.0, 0]

        def fold(b: Block) -> tuple[float, float]:
            assert b.auc is not None
            acc[0], acc[1], acc[2] = acc[0] + b.auc[0], acc[1] + b.auc[1] ** 2, acc[2] + 1
            mean, se = acc[0] / acc[2], math.sqrt(acc[1]) / acc[2]
            return mean, one_sided_p(ref[0] - mean, math.hypot(se, ref[1]), drop, "above")

        self._scan("label_auc", scored, ref[0], drop, fold)

    def summary(self) -> list[dict[str, Any]]:
        """One row per check and feature: its worst (smallest p-value) block, with how many were tested."""
        best: dict[tuple[str, str | None], dict[str, Any]] = {}
        counts: Counter[tuple[str, str | None]] = Counter()
        for row in self.rows:
            key = (row["check"], row["feature"])
            counts[key] += 1
            if key not in best or row["p_value"] < best[key]["p_value"]:
                best[key] = row
        return [{**{k: v for k, v in row.items() if k != "start"}, "tested": counts[key]} for key, row in best.items()]
