"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from trainer import metrics


def test_auc_counts_ordered_pairs_and_half_ties() -> None:
    labels = [1, 0, 1, 0, 1]
    preds = [0.9, 0.8, 0.8, 0.1, 0.3]
    # positive/negative pairs: (0.9 > 0.8, 0.9 > 0.1), (0.8 = 0.8 -> 1/2, 0.8 > 0.1), (0.3 < 0.8, 0.3 > 0.1)
    assert metrics.auc(labels, preds) == pytest.approx((2 + 1.5 + 1) / 6)


def test_auc_needs_both_classes() -> None:
    assert metrics.auc([1, 1], [0.2, 0.3]) is None


def test_logloss_by_hand() -> None:
    assert metrics.logloss([1, 0], [0.8, 0.4]) == pytest.approx((-math.log(0.8) - math.log(0.6)) / 2)


def test_logloss_clips_certain_mistakes() -> None:
    assert math.isfinite(metrics.logloss([1, 0], [0.0, 1.0]))


def test_prediction_bias_is_mean_prediction_over_mean_label() -> None:
    assert metrics.prediction_bias([1, 0, 0, 0], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.25 / 0.25)
    assert metrics.prediction_bias([1, 0], [0.3, 0.3]) == pytest.approx(0.6)
    assert metrics.prediction_bias([0, 0], [0.3, 0.3]) is None


def test_rce_is_improvement_over_the_mean_predictor_in_percent() -> None:
    labels, preds = [1, 0, 0, 0], [0.7, 0.1, 0.2, 0.1]
    mean = 0.25
    baseline = -(math.log(mean) + 3 * math.log(1 - mean)) / 4
    model = -(math.log(0.7) + math.log(0.9) + math.log(0.8) + math.log(0.9)) / 4
    assert metrics.rce(labels, preds) == pytest.approx(100 * (baseline - model) / baseline)
    assert metrics.rce(labels, [mean] * 4) == pytest.approx(0.0, abs=1e-9)


def test_evaluate_bundles_everything() -> None:
    report = metrics.evaluate([1, 0, 1, 0], [0.9, 0.2, 0.6, 0.4])
    assert report["count"] == 4 and report["positives"] == 2
    assert report["auc"] == 1.0
    assert report["prediction_bias"] == pytest.approx(0.525 / 0.5)
    assert set(report) >= {"count", "auc", "logloss", "prediction_bias", "rce"}
