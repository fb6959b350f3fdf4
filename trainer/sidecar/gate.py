"""The validation rules (pure): metrics against value thresholds and against a reference's metrics.

Used twice: the gate before publishing (a candidate against the current version, on the same
held-out slice) and the live check behind automatic rollback (the current version's live metrics
against the previous good version's). Each rule that fails gives one readable reason.
"""

from __future__ import annotations

from typing import Any

from trainer.sidecar.config import Thresholds


def violations(metrics: dict[str, Any], reference: dict[str, Any] | None, limits: Thresholds) -> list[str]:
    """Reasons ``metrics`` (auc, logloss, prediction_bias) break ``limits``; empty when it passes."""
    reasons: list[str] = []
    auc, logloss, bias = metrics.get("auc"), metrics.get("logloss"), metrics.get("prediction_bias")
    if limits.min_auc is not None and (auc is None or auc < limits.min_auc):
        reasons.append(f"auc {_fmt(auc)} < {limits.min_auc:g}")
    if limits.max_logloss is not None and (logloss is None or logloss > limits.max_logloss):
        reasons.append(f"logloss {_fmt(logloss)} > {limits.max_logloss:g}")
    if limits.min_prediction_bias is not None and (bias is None or bias < limits.min_prediction_bias):
        reasons.append(f"prediction_bias {_fmt(bias)} < {limits.min_prediction_bias:g}")
    if limits.max_prediction_bias is not None and (bias is None or bias > limits.max_prediction_bias):
        reasons.append(f"prediction_bias {_fmt(bias)} > {limits.max_prediction_bias:g}")
    if not reference:
        return reasons
    ref_auc, ref_logloss, ref_bias = reference.get("auc"), reference.get("logloss"), reference.get("prediction_bias")
    drop = None if auc is None or ref_auc is None else ref_auc - auc
    if limits.max_auc_drop is not None and drop is not None and drop > limits.max_auc_drop:
        assert auc is not None and ref_auc is not None
        reasons.append(f"auc {auc:.4f} dropped {ref_auc - auc:.4f} below {ref_auc:.4f} (max {limits.max_auc_drop:g})")
    if limits.max_logloss_increase is not None and logloss is not None and ref_logloss:
        increase = logloss / ref_logloss - 1.0
        if increase > limits.max_logloss_increase:
            reasons.append(
                f"logloss {logloss:.4f} is {100 * increase:.1f}% above {ref_logloss:.4f} "
                f"(max {100 * limits.max_logloss_increase:g}%)"
            )
    if limits.max_bias_shift is not None and bias is not None and ref_bias is not None:
        shift = abs(bias - 1.0) - abs(ref_bias - 1.0)
        if shift > limits.max_bias_shift:
            reasons.append(f"prediction_bias {bias:.3f} is {shift:.3f} further from 1 than {ref_bias:.3f}")
    return reasons


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
