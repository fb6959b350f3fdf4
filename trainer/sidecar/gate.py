"""The gate's model tests (pure): a candidate against the reference on the same matured impressions.

The candidate's scores are the progressive ones (each impression scored by the training model before
it trained on it); the reference's are those of the version that was current when the impression
arrived, on the same impression, with the same matured label. Each test is one-sided at the
configured confidence, against a margin: the candidate is refused only when it is significantly worse
(or breaks a floor with its whole interval), never because a point estimate moved by chance.

* AUC: DeLong's paired test of AUC(candidate) - AUC(reference) against ``-max_auc_drop``, within
  strata of consecutive impressions (the training model's level drifts over hours, and an AUC pooled
  over them would favour the fixed reference for its consistency alone);
* log loss: the paired per-impression difference, its mean against ``max_logloss_increase`` x the
  reference's log loss;
* prediction level: the candidate's mean prediction over the reference's on the same impressions (a
  ratio with its delta-method interval) within ``1 +- max_bias_shift``, refused only when the move is
  away from the matured labels' mean (the clicks still to come after ``maturity`` lower it for both);
* floors: the candidate's AUC (DeLong interval), log loss and prediction bias (delta-method interval
  of mean prediction / mean label) on all matured impressions.

:func:`floor_tests` alone serves the live check behind automatic rollback (the current version's own
scores on the matured impressions it scored).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trainer import metrics
from trainer.config import Floors, Thresholds
from trainer.metrics import EPSILON
from trainer.sidecar.stats import auc_difference, auc_with_se, one_sided_p, paired_mean, ratio_interval, z_value

STRATUM = 2_000  # AUCs within consecutive strata of this many impressions (see stats.stratified_delong)


def log_losses(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-item binary cross-entropy (predictions clipped as :func:`trainer.metrics.logloss` does)."""
    p = np.clip(np.asarray(scores, np.float64), EPSILON, 1.0 - EPSILON)
    y = np.asarray(labels, np.float64)
    return -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def floor_tests(labels: np.ndarray, scores: np.ndarray, floors: Floors, confidence: float) -> tuple[
    dict[str, Any], list[str]
]:
    """The floors on one version's scores: (test results, reasons for the floors broken)."""
    alpha, z = 1.0 - confidence, z_value(confidence)
    tests: dict[str, Any] = {}
    reasons: list[str] = []
    if floors.min_auc is not None:
        found = auc_with_se(labels, scores, STRATUM)
        if found is None:
            tests["auc_floor"] = {"floor": floors.min_auc, "skipped": "needs two clicked and two unclicked impressions"}
        else:
            auc, se = found
            p = one_sided_p(auc, se, floors.min_auc, "below")
            tests["auc_floor"] = {"auc": _r(auc), "upper_bound": _r(auc + z * se), "floor": floors.min_auc,
                                  "p_value": p, "broken": p < alpha}
            if p < alpha:
                reasons.append(f"auc {auc:.4f} (upper bound {auc + z * se:.4f}) is below the floor {floors.min_auc:g}")
    if floors.max_logloss is not None:
        mean, se = paired_mean(log_losses(labels, scores))
        p = one_sided_p(mean, se, floors.max_logloss, "above")
        tests["logloss_floor"] = {"logloss": _r(mean), "lower_bound": _r(mean - z * se), "ceiling": floors.max_logloss,
                                  "p_value": p, "broken": p < alpha}
        if p < alpha:
            reasons.append(f"logloss {mean:.4f} (lower bound {mean - z * se:.4f}) is above {floors.max_logloss:g}")
    low, high = floors.min_prediction_bias, floors.max_prediction_bias
    if low is not None or high is not None:
        found_bias = ratio_interval(scores, labels)
        if found_bias is None:
            tests["bias_floor"] = {"range": [low, high], "skipped": "no clicked impression"}
        else:
            bias, se = found_bias
            p_low = one_sided_p(bias, se, low, "below") if low is not None else 1.0
            p_high = one_sided_p(bias, se, high, "above") if high is not None else 1.0
            p = min(p_low, p_high)
            tests["bias_floor"] = {"prediction_bias": _r(bias), "interval": [_r(bias - z * se), _r(bias + z * se)],
                                   "range": [low, high], "p_value": p, "broken": p < alpha}
            if p < alpha:
                reasons.append(
                    f"prediction_bias {bias:.3f} (interval {bias - z * se:.3f}..{bias + z * se:.3f}) is outside "
                    f"[{low}, {high}]"
                )
    return tests, reasons


def paired_tests(labels: np.ndarray, candidate: np.ndarray, reference: np.ndarray, limits: Thresholds,
                 confidence: float) -> tuple[dict[str, Any], list[str]]:
    """Candidate against reference on the same impressions: (test results, reasons it is worse)."""
    alpha, z = 1.0 - confidence, z_value(confidence)
    tests: dict[str, Any] = {}
    reasons: list[str] = []
    if limits.max_auc_drop is not None:
        found = auc_difference(labels, candidate, reference, STRATUM)
        if found is None:
            tests["auc"] = {"margin": limits.max_auc_drop, "skipped": "needs two clicked and two unclicked impressions"}
        else:
            diff, se = found["difference"], found["se"]
            p = one_sided_p(diff, se, -limits.max_auc_drop, "below")
            tests["auc"] = {"test": f"DeLong, paired, within strata of {STRATUM} impressions", "auc": _r(found["auc"]),
                            "reference_auc": _r(found["reference_auc"]), "difference": _r(diff),
                            "interval": [_r(diff - z * se), _r(diff + z * se)],
                            "margin": limits.max_auc_drop, "p_value": p, "worse": p < alpha}
            if p < alpha:
                reasons.append(
                    f"auc {found['auc']:.4f} is {-diff:.4f} below the reference's {found['reference_auc']:.4f} "
                    f"(more than {limits.max_auc_drop:g} at p={p:.2g})"
                )
    if limits.max_logloss_increase is not None:
        mine, theirs = log_losses(labels, candidate), log_losses(labels, reference)
        ref_mean = float(theirs.mean())
        diff, se = paired_mean(mine - theirs)
        bound = limits.max_logloss_increase * ref_mean
        p = one_sided_p(diff, se, bound, "above")
        relative = diff / ref_mean if ref_mean > 0 else 0.0
        tests["logloss"] = {"test": "paired mean of per-impression differences", "logloss": _r(float(mine.mean())),
                            "reference_logloss": _r(ref_mean), "relative_increase": _r(relative),
                            "interval": [_r((diff - z * se) / ref_mean), _r((diff + z * se) / ref_mean)]
                            if ref_mean > 0 else None,
                            "margin": limits.max_logloss_increase, "p_value": p, "worse": p < alpha}
        if p < alpha:
            reasons.append(
                f"logloss {mine.mean():.4f} is {100 * relative:.1f}% above the reference's {ref_mean:.4f} "
                f"(more than {100 * limits.max_logloss_increase:g}% at p={p:.2g})"
            )
    if limits.max_bias_shift is not None:
        found_ratio = ratio_interval(candidate, reference)
        if found_ratio is not None:
            ratio, se = found_ratio
            high, low = 1.0 + limits.max_bias_shift, 1.0 / (1.0 + limits.max_bias_shift)
            p = min(one_sided_p(ratio, se, high, "above"), one_sided_p(ratio, se, low, "below"))
            # Only a move away from the labels counts: a reference far off in level (a first version
            # exported after a few hundred samples) must not hold back the candidate that corrects it.
            mean_label = float(np.mean(labels))
            away = mean_label > 0 and abs(math.log(max(float(np.mean(candidate)), EPSILON) / mean_label)) > abs(
                math.log(max(float(np.mean(reference)), EPSILON) / mean_label)
            )
            worse = p < alpha and away
            tests["bias_shift"] = {"test": "paired ratio of mean predictions (delta method)", "ratio": _r(ratio),
                                   "interval": [_r(ratio - z * se), _r(ratio + z * se)], "range": [_r(low), high],
                                   "away_from_labels": away, "p_value": p, "worse": worse}
            if worse:
                reasons.append(
                    f"mean prediction {ratio:.3f} x the reference's on the same impressions (outside "
                    f"{low:.3f}..{high:g} at p={p:.2g})"
                )
    return tests, reasons


def judge(view: dict[str, np.ndarray], limits: Thresholds, confidence: float, min_samples: int,
          references: set[int] | None = None) -> dict[str, Any]:
    """The model part of a gate decision on matured evidence (``view``: label, progressive, current,
    version columns): the candidate's metrics, the reference's on the paired impressions, the tests,
    the reasons to refuse. ``references``: the versions whose scores may serve as the reference (the
    published ones; None: any)."""
    labels, candidate = view["label"].astype(np.float64), view["progressive"].astype(np.float64)
    out: dict[str, Any] = {"evidence": int(labels.size), "metrics": metrics.evaluate(labels, candidate) if labels.size
                           else {"count": 0}}
    tests: dict[str, Any] = {}
    reasons: list[str] = []
    if labels.size < min_samples:
        out.update(tests={"skipped": f"{labels.size} matured impressions (gate.min_samples is {min_samples})"},
                   reasons=[], reference_metrics=None, reference_versions={})
        return out
    floor_results, floor_reasons = floor_tests(labels, candidate, limits, confidence)
    tests.update(floor_results)
    reasons += floor_reasons
    paired = ~np.isnan(view["current"])
    if references is not None:
        paired &= np.isin(view["version"], sorted(references))
    versions, counts = np.unique(view["version"][paired], return_counts=True)
    out["reference_versions"] = {str(v): int(c) for v, c in zip(versions, counts, strict=True)}
    out["paired"] = int(paired.sum())
    if paired.sum() < min_samples:
        out["reference_metrics"] = None
        tests["paired"] = {"skipped": f"{int(paired.sum())} matured impressions scored by a reference version "
                                      f"(gate.min_samples is {min_samples})"}
    else:
        y, mine, theirs = labels[paired], candidate[paired], view["current"][paired].astype(np.float64)
        out["reference_metrics"] = metrics.evaluate(y, theirs)
        paired_results, paired_reasons = paired_tests(y, mine, theirs, limits, confidence)
        tests.update(paired_results)
        reasons += paired_reasons
    out["tests"], out["reasons"] = tests, reasons
    return out


def freshness(records: list[dict[str, Any]], current: int | None) -> dict[str, Any]:
    """How far behind the newest export the served version is, from the registry's records: exports,
    samples trained and seconds of stream time (``stream_ms`` of each record)."""
    judged = [r for r in records if r.get("samples_trained") is not None]
    served = next((r for r in judged if r["version"] == current), None)
    newest = judged[-1] if judged else None
    out: dict[str, Any] = {"current": current, "newest": None if newest is None else newest["version"],
                           "exports_behind": 0, "samples_behind": 0, "seconds_behind": 0.0}
    if newest is None:
        return out
    out["exports_behind"] = sum(1 for r in judged if current is None or r["version"] > current)
    out["samples_behind"] = int(newest["samples_trained"]) - (int(served["samples_trained"]) if served else 0)
    if served is None:
        out["seconds_behind"] = None
    elif newest.get("stream_ms") is not None and served.get("stream_ms") is not None:
        out["seconds_behind"] = round((int(newest["stream_ms"]) - int(served["stream_ms"])) / 1000.0, 3)
    else:
        out["seconds_behind"] = None
    return out
