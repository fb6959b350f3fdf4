"""The gate's model tests, the rollback's persisting breaches and the served lag (pure parts)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trainer.config import Floors, RollbackConfig, Thresholds
from trainer.sidecar.evidence import Evidence
from trainer.sidecar.gate import floor_tests, freshness, judge
from trainer.sidecar.rollback import LiveMonitor

CONFIDENCE = 0.99


def world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and a good model's scores (AUC ~0.75, calibrated)."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(-1.0, 1.2, n)
    p = 1 / (1 + np.exp(-logit))
    return (rng.random(n) < p).astype(np.float64), p


def view(labels: np.ndarray, candidate: np.ndarray, reference: np.ndarray | None, version: int = 1) -> dict[str, Any]:
    n = labels.size
    return {
        "label": labels.astype(np.int8),
        "progressive": candidate.astype(np.float32),
        "current": np.full(n, np.nan, np.float32) if reference is None else reference.astype(np.float32),
        "version": np.full(n, 0 if reference is None else version, np.int32),
    }


def test_an_equal_candidate_passes_on_every_seed_where_fixed_deltas_refused_some() -> None:
    """Two models of the same quality, judged on 2,000 impressions: the paired tests never refuse; the
    old rule (AUC 0.02 below the reference's, point estimates, different slices) did now and then."""
    limits = Thresholds()
    refused_by_delta = 0
    for seed in range(40):
        labels, p = world(2_000, seed)
        rng = np.random.default_rng(100 + seed)
        candidate = np.clip(p * np.exp(rng.normal(0, 0.3, p.size)), 1e-4, 1 - 1e-4)
        reference = np.clip(p * np.exp(rng.normal(0, 0.3, p.size)), 1e-4, 1 - 1e-4)
        decision = judge(view(labels, candidate, reference), limits, CONFIDENCE, 500)
        assert decision["reasons"] == [], (seed, decision["tests"])
        auc = decision["tests"]["auc"]
        assert auc["test"].startswith("DeLong, paired") and 0 < auc["p_value"] <= 1
        other_labels, other_p = world(2_000, 1_000 + seed)  # the old gate's reference: another slice
        other = np.clip(other_p * np.exp(rng.normal(0, 0.3, other_p.size)), 1e-4, 1 - 1e-4)
        from trainer import metrics

        drop = metrics.auc(other_labels, other) - metrics.auc(labels, candidate)
        refused_by_delta += drop > 0.02
    assert refused_by_delta > 0


def test_a_worse_candidate_is_refused_with_the_test_and_its_p_value() -> None:
    labels, p = world(5_000, 3)
    rng = np.random.default_rng(4)
    worse = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + rng.normal(0, 1.5, p.size))))  # much noisier
    decision = judge(view(labels, worse, p, version=7), Thresholds(), CONFIDENCE, 500, references={7})
    assert decision["tests"]["auc"]["worse"] and decision["tests"]["auc"]["p_value"] < 0.01
    assert decision["tests"]["logloss"]["worse"]
    assert any(r.startswith("auc ") and "below the reference's" in r for r in decision["reasons"])
    assert not decision["tests"]["bias_shift"]["worse"]  # the same level, only noisier
    inflated = judge(view(labels, np.clip(p * 2, 0, 0.99), p, version=7), Thresholds(), CONFIDENCE, 500)
    assert inflated["tests"]["bias_shift"]["worse"] and inflated["tests"]["bias_shift"]["ratio"] > 1.7
    assert any(r.startswith("mean prediction 1.") for r in inflated["reasons"])
    # the other way round, the candidate corrects a reference far off in level: no refusal for that
    corrects = judge(view(labels, p, np.clip(p * 2, 0, 0.99), version=7), Thresholds(), CONFIDENCE, 500)
    shift = corrects["tests"]["bias_shift"]
    assert shift["ratio"] < 0.6 and shift["p_value"] < 0.01 and not shift["worse"] and corrects["reasons"] == []
    assert decision["reference_versions"] == {"7": 5_000} and decision["reference_metrics"]["count"] == 5_000
    # a rolled-back version's scores are no reference: the paired tests are skipped, the floors stay
    skipped = judge(view(labels, worse, p, version=7), Thresholds(), CONFIDENCE, 500, references={8})
    assert "paired" in skipped["tests"] and "auc" not in skipped["tests"] and skipped["reference_metrics"] is None


def test_floors_break_only_with_their_whole_interval() -> None:
    labels, p = world(3_000, 5)
    noise = np.random.default_rng(6).random(p.size)  # AUC 0.5
    floors = Floors(min_auc=0.55, min_prediction_bias=0.5, max_prediction_bias=2.0)
    tests, reasons = floor_tests(labels, noise * 0.6, floors, CONFIDENCE)
    assert tests["auc_floor"]["broken"] and "below the floor 0.55" in reasons[0]
    assert tests["bias_floor"]["broken"] is False  # mean 0.3 for a click rate ~0.3
    assert "bias_floor" not in floor_tests(labels, noise, Floors(), CONFIDENCE)[0]  # off by default
    tests, reasons = floor_tests(labels, np.clip(p * 3, 0, 0.99), floors, CONFIDENCE)
    assert tests["bias_floor"]["broken"] and tests["bias_floor"]["interval"][0] > 2.0
    few_labels, few_p = world(60, 7)
    tests, reasons = floor_tests(few_labels, few_p * 0 + np.linspace(0.4, 0.6, 60), Floors(min_auc=0.55), CONFIDENCE)
    assert reasons == [] and tests["auc_floor"]["upper_bound"] > 0.55  # AUC ~0.5 but on 60 impressions
    ll_tests, ll_reasons = floor_tests(labels, p, Floors(max_logloss=0.1), CONFIDENCE)
    assert ll_tests["logloss_floor"]["broken"] and ll_reasons


def test_without_enough_matured_impressions_the_tests_are_not_run() -> None:
    labels, p = world(300, 8)
    decision = judge(view(labels, p, None), Thresholds(), CONFIDENCE, 1_000)
    assert decision["reasons"] == [] and "gate.min_samples is 1000" in decision["tests"]["skipped"]


def add_matured(evidence: Evidence, labels: np.ndarray, current: np.ndarray, version: int, first: int) -> None:
    """Impressions scored by ``version``, all matured (emitted long after their impression)."""
    from trainer.samples import Sample, SampleTable

    samples = [
        Sample(f"i{first + k}:x", f"i{first + k}", "u", "v", 0, {}, {}, {}, int(labels[k]), 0 if labels[k] else 1,
               first + k, first + k + 10**9, None)
        for k in range(labels.size)
    ]
    evidence.add(samples, SampleTable(samples).times, current, current, version, first)


def test_the_live_monitor_needs_consecutive_breaches() -> None:
    monitor = LiveMonitor(RollbackConfig(window=2_000, consecutive=2), CONFIDENCE)
    evidence = Evidence(capacity=100_000)
    monitor.arm(4, trained_until=10_000)
    outcomes = []
    for k, good in enumerate((True, False, True, False, False)):  # only the last two in a row trigger it
        labels, p = world(2_000, 20 + k)
        add_matured(evidence, labels, p if good else 1 - p, 4, 2_000 * k)  # bad: ranks upside down
        assert monitor.model_window(evidence, 0) is not None
        assert monitor.model_window(evidence, 0) is None  # no new window yet
        outcomes.append(monitor.due() is not None)
    assert outcomes == [False, False, False, False, True]
    due = monitor.due()
    assert due is not None and due["kind"] == "model" and due["windows"] == 2 and "below the floor" in due["reasons"][0]
    other = LiveMonitor(RollbackConfig(window=2_000), CONFIDENCE)
    other.arm(5, trained_until=20_000)  # another version: none of these impressions are its
    assert other.model_window(evidence, 0) is None
    monitor.disarm()
    assert monitor.model_window(evidence, 0) is None and monitor.due() is None


def test_a_data_breach_blames_only_a_version_trained_on_the_suspect_data() -> None:
    monitor = LiveMonitor(RollbackConfig(consecutive=2), CONFIDENCE)
    failure = {"check": "late_share", "feature": None, "value": 0.0, "reference": 0.1, "tolerance": 0.3,
               "p_value": 1e-9, "passed": False, "start": 5_000}
    monitor.arm(2, trained_until=4_000)  # trained before the suspect data (from 5,000 - a block)
    for _ in range(3):
        assert monitor.data_window({"failures": [failure], "suspect_from": 5_000})["reasons"] == []
    assert monitor.due() is None
    monitor.arm(3, trained_until=6_000)  # trained on it
    monitor.data_window({"failures": [failure], "suspect_from": 5_000})
    assert monitor.due() is None
    monitor.data_window({"failures": [failure], "suspect_from": 5_000})
    due = monitor.due()
    assert due is not None and due["kind"] == "data" and due["suspect_from"] == 5_000
    assert "late_share" in due["reasons"][0] and "from sample 5000" in due["reasons"][0]
    disabled = LiveMonitor(RollbackConfig(enabled=False), CONFIDENCE)
    disabled.arm(3, trained_until=6_000)
    assert not disabled.armed


@pytest.mark.parametrize(
    ("current", "want"),
    [
        (3, {"exports_behind": 2, "samples_behind": 2_000, "seconds_behind": 20.0}),
        (5, {"exports_behind": 0, "samples_behind": 0, "seconds_behind": 0.0}),
        (None, {"exports_behind": 5, "samples_behind": 5_000, "seconds_behind": None}),
    ],
)
def test_freshness_of_the_served_version(current: int | None, want: dict[str, Any]) -> None:
    records = [{"version": v, "status": "published", "samples_trained": 1_000 * v, "stream_ms": 10_000 * v}
               for v in range(1, 6)]
    records.insert(0, {"version": 0, "status": "unjudged"})
    got = freshness(records, current)
    assert {k: got[k] for k in want} == want and got["newest"] == 5 and got["current"] == current
