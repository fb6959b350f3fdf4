"""Offline metrics: AUC, log loss, prediction bias, RCE (plain NumPy, exact)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EPSILON = 1e-7


def _arrays(labels: Any, predictions: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, np.float64).ravel()
    p = np.asarray(predictions, np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} predictions")
    return y, p


def auc(labels: Any, predictions: Any) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None when one class is missing."""
    y, p = _arrays(labels, predictions)
    positives = float(np.sum(y > 0.5))
    negatives = float(y.size - positives)
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    ranks = np.empty(y.size, np.float64)
    # average 1-based rank of each run of equal predictions
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], y.size]
    run_rank = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(run_rank, ends - starts)
    rank_sum = float(np.sum(ranks[y > 0.5]))
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def logloss(labels: Any, predictions: Any) -> float:
    """Mean binary cross-entropy, predictions clipped to [1e-7, 1 - 1e-7]."""
    y, p = _arrays(labels, predictions)
    if y.size == 0:
        return math.nan
    p = np.clip(p, EPSILON, 1.0 - EPSILON)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def prediction_bias(labels: Any, predictions: Any) -> float | None:
    """Mean prediction / mean label (1 is calibrated on average); None without positives."""
    y, p = _arrays(labels, predictions)
    mean_label = float(np.mean(y)) if y.size else 0.0
    if mean_label == 0.0:
        return None
    return float(np.mean(p)) / mean_label


def rce(labels: Any, predictions: Any) -> float | None:
    """Relative cross-entropy, in percent: the log-loss improvement over predicting the mean label."""
    y, _ = _arrays(labels, predictions)
    mean_label = float(np.mean(y)) if y.size else 0.0
    if mean_label in (0.0, 1.0):
        return None
    baseline = logloss(y, np.full(y.size, mean_label))
    return 100.0 * (baseline - logloss(labels, predictions)) / baseline


def evaluate(labels: Any, predictions: Any) -> dict[str, Any]:
    """All the metrics of one set of predictions, as a JSON-ready dict."""
    y, p = _arrays(labels, predictions)
    return {
        "count": int(y.size),
        "positives": int(np.sum(y > 0.5)),
        "mean_label": float(np.mean(y)) if y.size else None,
        "mean_prediction": float(np.mean(p)) if p.size else None,
        "auc": auc(y, p),
        "logloss": logloss(y, p) if y.size else None,
        "prediction_bias": prediction_bias(y, p),
        "rce": rce(y, p),
    }
