"""The gate's tests: DeLong against a direct O(n^2) computation and hand-computed values, the paired
mean, the bias interval, one-sided p-values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer import metrics
from trainer.sidecar import stats


def direct_delong(labels: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's AUCs and covariance from the pairwise kernel psi(x, y) = [x > y] + [x == y] / 2."""
    y = labels > 0.5
    v10, v01, aucs = [], [], []
    for s in scores:
        x, z = s[y][:, None], s[~y][None, :]
        psi = (x > z) + 0.5 * (x == z)
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, n = int(y.sum()), int((~y).sum())
    cov = np.atleast_2d(np.cov(np.array(v10))) / m + np.atleast_2d(np.cov(np.array(v01))) / n
    return np.array(aucs), cov


def test_delong_matches_the_direct_computation_with_ties() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(400) < 0.3).astype(np.float32)
    a = np.round(labels * 0.5 + rng.random(400), 1)  # rounded: many ties, within and across classes
    b = np.round(labels * 0.2 + rng.random(400), 2)
    found = stats.delong(labels, a, b)
    assert found is not None
    aucs, cov = found
    want_aucs, want_cov = direct_delong(labels, a, b)
    np.testing.assert_allclose(aucs, want_aucs, rtol=1e-12)
    np.testing.assert_allclose(cov, want_cov, rtol=1e-9, atol=1e-15)
    assert aucs[0] == pytest.approx(metrics.auc(labels, a))


def test_delong_known_values() -> None:
    # positives 0.9, 0.6; negatives 0.7, 0.1: pairs won 1, 1, 0, 1 -> AUC 0.75; per positive the
    # shares (1, 0.5), per negative (0.5, 1): variances 0.125 each, over 2 -> 0.0625 + 0.0625.
    labels = np.array([1, 1, 0, 0])
    found = stats.auc_with_se(labels, np.array([0.9, 0.6, 0.7, 0.1]))
    assert found is not None
    assert found[0] == pytest.approx(0.75) and found[1] == pytest.approx(math.sqrt(0.125))
    # identical columns: a zero difference with zero variance
    diff = stats.auc_difference(labels, np.array([0.9, 0.6, 0.7, 0.1]), np.array([0.9, 0.6, 0.7, 0.1]))
    assert diff is not None and diff["difference"] == 0.0 and diff["se"] == pytest.approx(0.0, abs=1e-12)
    assert stats.delong(np.array([1, 0, 0]), np.array([0.2, 0.1, 0.3])) is None  # one positive: no variance


def test_paired_auc_difference_detects_a_worse_model_that_unpaired_noise_would_hide() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    signal = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(signal - 1.5)))).astype(float)
    good = signal + rng.normal(scale=0.5, size=n)
    worse = good + rng.normal(scale=0.5, size=n)  # the same model with extra noise
    diff = stats.auc_difference(labels, worse, good)
    assert diff is not None and diff["difference"] < 0
    single = stats.auc_with_se(labels, worse)
    assert single is not None
    # the paired standard error is a fraction of the unpaired one (sqrt(2) x a single AUC's)
    assert diff["se"] < 0.5 * math.sqrt(2) * single[1]
    # a 0.014 drop: significant paired (p < 0.01), not unpaired (under one unpaired standard error)
    assert stats.one_sided_p(diff["difference"], diff["se"], 0.0, "below") < 0.01
    assert abs(diff["difference"]) < math.sqrt(2) * single[1]


def test_paired_mean_ratio_interval_and_p_values() -> None:
    mean, se = stats.paired_mean(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    with pytest.raises(ValueError, match="at least 2 pairs, got 1"):
        stats.paired_mean(np.array([1.0]))
    rng = np.random.default_rng(1)
    y = (rng.random(20_000) < 0.2).astype(float)
    p = np.full(20_000, 0.3)
    found = stats.ratio_interval(p, y)
    assert found is not None
    ratio, se = found
    assert ratio == pytest.approx(0.3 / y.mean()) and 0.005 < se < 0.05
    assert stats.ratio_interval(p, np.zeros(20_000)) is None
    assert stats.one_sided_p(1.0, 0.1, 0.5, "above") == pytest.approx(1 - stats.NORMAL.cdf(5.0))
    assert stats.one_sided_p(0.4, 0.1, 0.5, "above") > 0.5
    assert stats.one_sided_p(0.4, 0.0, 0.5, "below") == 0.0
    assert stats.z_value(0.99) == pytest.approx(2.3263, abs=1e-4)
    assert stats.proportion_se(0, 100, 10, 100) > 0  # a zero count still has a standard error


def test_auc_within_strata_ignores_a_level_that_drifts_between_them() -> None:
    """A model in training drifts in level over hours: pooled over them its AUC suffers, within strata
    (consecutive items) it does not; a fixed model's AUC is the same both ways."""
    rng = np.random.default_rng(8)
    n = 8_000
    signal = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(signal - 1.0)))).astype(float)
    fixed = signal
    drifting = signal + np.repeat(rng.normal(scale=2.0, size=4), n // 4)  # four levels, one per stratum
    pooled = stats.auc_difference(labels, drifting, fixed)
    within = stats.auc_difference(labels, drifting, fixed, stratum=2_000)
    assert pooled is not None and within is not None
    assert pooled["difference"] < -0.03 and abs(within["difference"]) < 1e-12
    single = stats.auc_with_se(labels, fixed)
    strata = stats.auc_with_se(labels, fixed, stratum=2_000)
    assert single is not None and strata is not None
    assert abs(single[0] - strata[0]) < 0.01 and strata[1] == pytest.approx(single[1], rel=0.15)
    assert stats.stratified_delong(labels[:3_000], fixed[:3_000], stratum=2_000) is not None  # one stratum
