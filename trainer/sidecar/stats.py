"""The tests behind the gate's and the rollback's decisions (pure NumPy, normal approximations).

* :func:`delong`: the AUCs of several score columns on the same labelled items and their covariance
  (DeLong, DeLong & Clarke-Pearson 1988), in O(n log n) through midranks (Sun & Xu 2014): two models
  scored on the same impressions are compared by the difference of their AUCs, whose variance takes
  the pairing into account (far tighter than two independent AUCs).
* :func:`paired_mean`: the mean of per-item differences (log loss of the candidate minus log loss of
  the reference) and its standard error.
* :func:`ratio_interval`: mean prediction / mean label (the prediction bias) with its delta-method
  standard error.
* :func:`one_sided_p`: the p-value that an estimate lies beyond a bound, on the side that matters.

Every test is one-sided against a margin: the question is never "are they equal" (with 20,000 items
anything differs) but "is the candidate worse by more than the margin", answered at a confidence.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist
from typing import Literal

import numpy as np

NORMAL = NormalDist()


def z_value(confidence: float) -> float:
    """The one-sided normal quantile of ``confidence`` (0.99 -> 2.326)."""
    return NORMAL.inv_cdf(confidence)


def one_sided_p(estimate: float, se: float, bound: float, side: Literal["above", "below"]) -> float:
    """p-value of "the true value is not beyond ``bound``": small when ``estimate`` is significantly
    above (``side="above"``) or below ``bound``. A zero standard error gives 0 or 1."""
    gap = estimate - bound if side == "above" else bound - estimate
    if se <= 0.0 or not math.isfinite(se):
        return 0.0 if gap > 0 else 1.0
    return 1.0 - NORMAL.cdf(gap / se)


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties given the mean of the ranks they span (O(n log n))."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    ranks = np.empty(x.size, np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def delong(labels: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(AUC of each score column, their covariance matrix) on binary ``labels``; None unless there
    are at least two positives and two negatives (no variance otherwise)."""
    y = np.asarray(labels).ravel() > 0.5
    m, n = int(y.sum()), int(y.size - y.sum())
    if m < 2 or n < 2:
        return None
    k = len(scores)
    aucs = np.empty(k)
    v10 = np.empty((k, m))  # per positive: the share of negatives it outranks (ties half)
    v01 = np.empty((k, n))  # per negative: the share of positives that outrank it
    for i, column in enumerate(scores):
        s = np.asarray(column, np.float64).ravel()
        if s.size != y.size:
            raise ValueError(f"{y.size} labels but {s.size} scores in column {i}")
        pos, neg = s[y], s[~y]
        tz = midranks(np.concatenate([pos, neg]))
        tx, ty = midranks(pos), midranks(neg)
        aucs[i] = (tz[:m].sum() - m * (m + 1) / 2.0) / (m * n)
        v10[i] = (tz[:m] - tx) / n
        v01[i] = 1.0 - (tz[m:] - ty) / m
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def stratified_delong(labels: np.ndarray, *scores: np.ndarray, stratum: int | None = None) -> tuple[
    np.ndarray, np.ndarray
] | None:
    """:func:`delong` within consecutive strata of ``stratum`` items (the last one takes a short
    remainder), averaged: AUCs as the mean of the strata's, covariance as the sum of theirs over K^2.

    Why: the items are in arrival order and one column is a model in training, whose level drifts over
    hours; an AUC pooled over hours then ranks one hour's items against another's, and a fixed model
    (the served version) wins by consistency alone. Within a stratum only the ranking counts. Strata
    without two of each class are left out. ``stratum`` None: one stratum."""
    y = np.asarray(labels).ravel()
    n = y.size
    if stratum is None or n < 2 * stratum:
        return delong(y, *scores)
    k = n // stratum
    edges = [round(i * n / k) for i in range(k + 1)]  # k strata of at least ``stratum`` items
    found = [delong(y[a:b], *(np.asarray(s).ravel()[a:b] for s in scores)) for a, b in itertools.pairwise(edges)]
    parts = [f for f in found if f is not None]
    if not parts:
        return None
    used = len(parts)
    return np.mean([a for a, _ in parts], axis=0), np.sum([c for _, c in parts], axis=0) / (used * used)


def auc_with_se(labels: np.ndarray, scores: np.ndarray, stratum: int | None = None) -> tuple[float, float] | None:
    """One AUC and its DeLong standard error (within strata, see :func:`stratified_delong`); None
    without two of each class."""
    found = stratified_delong(labels, scores, stratum=stratum)
    if found is None:
        return None
    aucs, cov = found
    return float(aucs[0]), math.sqrt(max(float(cov[0, 0]), 0.0))


def auc_difference(labels: np.ndarray, candidate: np.ndarray, reference: np.ndarray,
                   stratum: int | None = None) -> dict[str, float] | None:
    """AUC(candidate) - AUC(reference) on the same items, with its paired (DeLong) standard error
    (within strata, see :func:`stratified_delong`)."""
    found = stratified_delong(labels, candidate, reference, stratum=stratum)
    if found is None:
        return None
    aucs, cov = found
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    return {
        "auc": float(aucs[0]),
        "reference_auc": float(aucs[1]),
        "difference": float(aucs[0] - aucs[1]),
        "se": math.sqrt(max(var, 0.0)),
    }


def paired_mean(differences: np.ndarray) -> tuple[float, float]:
    """Mean of paired differences and its standard error (n >= 2)."""
    d = np.asarray(differences, np.float64)
    if d.size < 2:
        raise ValueError(f"a paired test needs at least 2 pairs, got {d.size}")
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray) -> tuple[float, float] | None:
    """mean(numerator) / mean(denominator) and its delta-method standard error; None when the
    denominator's mean is 0 (no positives: no prediction bias)."""
    a = np.asarray(numerator, np.float64)
    b = np.asarray(denominator, np.float64)
    if a.size < 2 or a.size != b.size:
        return None
    mean_b = float(b.mean())
    if mean_b <= 0.0:
        return None
    ratio = float(a.mean()) / mean_b
    residual = a - ratio * b
    se = float(residual.std(ddof=1)) / (math.sqrt(a.size) * mean_b)
    return ratio, se


def proportion_se(k1: float, n1: float, k0: float, n0: float) -> float:
    """Standard error of the difference of two proportions k1/n1 - k0/n0 (unpooled; a floor of half a
    count keeps a zero proportion from claiming certainty)."""
    p1 = max(k1, 0.5) / n1 if n1 else 0.0
    p0 = max(k0, 0.5) / n0 if n0 else 0.0
    p1, p0 = min(p1, 1.0), min(p0, 1.0)
    return math.sqrt((p1 * (1 - p1) / n1 if n1 else 0.0) + (p0 * (1 - p0) / n0 if n0 else 0.0))
