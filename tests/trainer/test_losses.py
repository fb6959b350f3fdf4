"""Each delayed-feedback loss against values computed by hand (docs/trainer.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from trainer.config import LossConfig
from trainer.losses import defer
from trainer.losses.esdfm import delayed_positive_probability, real_negative_probability
from trainer.losses.registry import LOSSES, get_loss
from trainer.samples import LATE_POSITIVE, NEGATIVE, POSITIVE


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def nlog(p: float) -> float:
    return -math.log(p)


# one POSITIVE, one NEGATIVE, one LATE_POSITIVE
LOGITS = [0.5, -1.0, 2.0]
LABELS = [1.0, 0.0, 1.0]
ATTR = [POSITIVE, NEGATIVE, LATE_POSITIVE]


def run(name: str, logits=LOGITS, labels=LABELS, attributions=ATTR, **extra_outputs) -> dict[str, float]:
    loss = get_loss(name, LossConfig(**extra_outputs.pop("config", {})).params())
    outputs = {"logit": tf.constant(logits, tf.float32)}
    outputs.update({k: tf.constant(v, tf.float32) for k, v in extra_outputs.items()})
    targets = {"label": tf.constant(labels, tf.float32), "attribution": tf.constant(attributions, tf.int32)}
    return {k: float(v) for k, v in loss(targets, outputs).items()}


def test_every_design_loss_is_registered() -> None:
    assert sorted(LOSSES) == ["defer", "esdfm", "fnc", "fnw", "naive", "pu"]


def test_naive_is_cross_entropy_on_the_stream() -> None:
    expected = (nlog(sig(0.5)) + nlog(1 - sig(-1.0)) + nlog(sig(2.0))) / 3
    assert run("naive")["loss"] == pytest.approx(expected, rel=1e-6)


def test_pu_late_positive_term_undoes_the_fake_negative() -> None:
    # POSITIVE: -log f; NEGATIVE: -log(1-f); LATE_POSITIVE: -log f + log(1-f) = -x (below the bound)
    pos, neg, late = nlog(sig(0.5)), nlog(1 - sig(-1.0)), nlog(sig(2.0)) - nlog(1 - sig(2.0))
    assert late == pytest.approx(-2.0)
    # the batch's negative risk (neg - undo) is positive here, so the nnPU guard stays off
    logits, labels, attr = [0.5, -1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 0.0], [POSITIVE, NEGATIVE, LATE_POSITIVE, NEGATIVE]
    neg2 = nlog(1 - sig(3.0))
    out = run("pu", logits, labels, attr)
    # averaged over the batch's 3 impressions (4 samples, one of them a LATE_POSITIVE correction)
    assert out["loss"] == pytest.approx((pos + neg + late + neg2) / 3, rel=1e-6)
    assert out["negative_risk"] == pytest.approx((neg + neg2 - nlog(1 - sig(2.0))) / 3, rel=1e-6)
    assert out["nnpu_guard"] == 0.0


def test_pu_pair_in_one_batch_equals_the_true_label_cross_entropy() -> None:
    # an impression's NEGATIVE and LATE_POSITIVE together cost exactly -log f
    out = run("pu", [1.3, 1.3], [0.0, 1.0], [NEGATIVE, LATE_POSITIVE])
    assert out["loss"] == pytest.approx(nlog(sig(1.3)), rel=1e-6)  # one impression


def test_pu_late_weight_scales_the_whole_late_positive_term() -> None:
    """A live LATE_POSITIVE weighted w (standing in for the clicks still to come) counts w times."""
    logits, labels, attr = [0.5, -1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 0.0], [POSITIVE, NEGATIVE, LATE_POSITIVE, NEGATIVE]
    loss = get_loss("pu", LossConfig().params())
    targets = {
        "label": tf.constant(labels),
        "attribution": tf.constant(attr, tf.int32),
        "late_weight": tf.constant([1.0, 1.0, 1.5, 1.0]),  # only a LATE_POSITIVE's weight counts
    }
    out = {k: float(v) for k, v in loss(targets, {"logit": tf.constant(logits)}).items()}
    pos, neg, neg2 = nlog(sig(0.5)), nlog(1 - sig(-1.0)), nlog(1 - sig(3.0))
    late = nlog(sig(2.0)) - nlog(1 - sig(2.0))
    assert out["loss"] == pytest.approx((pos + neg + 1.5 * late + neg2) / 3, rel=1e-6)
    assert out["negative_risk"] == pytest.approx((neg + neg2 - 1.5 * nlog(1 - sig(2.0))) / 3, rel=1e-6)
    ignored = {**targets, "late_weight": tf.constant([3.0, 3.0, 1.0, 3.0])}
    assert float(loss(ignored, {"logit": tf.constant(logits)})["loss"]) == pytest.approx(
        run("pu", logits, labels, attr)["loss"]
    )


def test_pu_pending_weight_spread_over_negatives_by_click_probability() -> None:
    """pending_on_negatives 1: the LATE_POSITIVE's extra 0.5 moves onto the NEGATIVEs, each in
    proportion to its f, as an undo term (-log f + log(1 - f)) of that weight; 0 leaves it in place."""
    logits, labels, attr = [0.5, -1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 0.0], [POSITIVE, NEGATIVE, LATE_POSITIVE, NEGATIVE]
    loss = get_loss("pu", LossConfig().params())
    targets = {
        "label": tf.constant(labels),
        "attribution": tf.constant(attr, tf.int32),
        "late_weight": tf.constant([1.0, 1.0, 1.5, 1.0]),
    }
    pos, neg, neg2 = nlog(sig(0.5)), nlog(1 - sig(-1.0)), nlog(1 - sig(3.0))

    def undo(x: float) -> float:
        return nlog(sig(x)) - nlog(1 - sig(x))

    share1, share2 = 0.5 * sig(-1.0) / (sig(-1.0) + sig(3.0)), 0.5 * sig(3.0) / (sig(-1.0) + sig(3.0))
    spread = {**targets, "pending_on_negatives": tf.constant(1.0)}
    out = {k: float(v) for k, v in loss(spread, {"logit": tf.constant(logits)}).items()}
    expected = (pos + neg + share1 * undo(-1.0) + undo(2.0) + neg2 + share2 * undo(3.0)) / 3
    assert out["loss"] == pytest.approx(expected, rel=1e-6)
    kept = {**targets, "pending_on_negatives": tf.constant(0.0)}
    out = {k: float(v) for k, v in loss(kept, {"logit": tf.constant(logits)}).items()}
    assert out["loss"] == pytest.approx((pos + neg + 1.5 * undo(2.0) + neg2) / 3, rel=1e-6)


def test_a_batch_without_negatives_keeps_its_extra_weight_on_the_late_positives() -> None:
    """Nowhere to spread it (no NEGATIVE in the batch): the loss is the one with the weight left in
    place, not the one with the extra weight dropped."""
    logits, labels, attr = [0.5, 2.0], [1.0, 1.0], [POSITIVE, LATE_POSITIVE]
    loss = get_loss("pu", LossConfig().params())
    targets = {
        "label": tf.constant(labels),
        "attribution": tf.constant(attr, tf.int32),
        "late_weight": tf.constant([1.0, 3.0]),
    }
    kept = loss({**targets, "pending_on_negatives": tf.constant(0.0)}, {"logit": tf.constant(logits)})["loss"]
    spread = loss({**targets, "pending_on_negatives": tf.constant(1.0)}, {"logit": tf.constant(logits)})["loss"]
    dropped = loss({**targets, "late_weight": tf.constant([1.0, 1.0])}, {"logit": tf.constant(logits)})["loss"]
    assert float(spread) == pytest.approx(float(kept), rel=1e-6)
    assert float(spread) != pytest.approx(float(dropped), rel=1e-3)


def test_the_spread_is_not_differentiated_through_the_click_probability() -> None:
    """The spread's f only says where the weight goes: the gradient of a NEGATIVE's spread undo term
    is its weight times d(-x)/dx = -1 (the term equals -x below the bound), nothing from f itself."""
    logit = tf.Variable([0.0, 1.0, -2.0])
    labels, attr = [1.0, 0.0, 0.0], [LATE_POSITIVE, NEGATIVE, NEGATIVE]
    loss = get_loss("pu", LossConfig(pu_nnpu=False).params())
    targets = {
        "label": tf.constant(labels),
        "attribution": tf.constant(attr, tf.int32),
        "late_weight": tf.constant([3.0, 1.0, 1.0]),
        "pending_on_negatives": tf.constant(1.0),
    }
    with tf.GradientTape() as tape:
        value = loss(targets, {"logit": logit})["loss"]
    grad = tape.gradient(value, logit).numpy()
    weights = 2.0 * np.array([sig(1.0), sig(-2.0)]) / (sig(1.0) + sig(-2.0))
    n = 2.0  # impressions: 3 samples, one LATE_POSITIVE
    expected_negatives = (np.array([sig(1.0), sig(-2.0)]) - weights) / n
    np.testing.assert_allclose(grad[1:], expected_negatives, rtol=1e-5)
    assert grad[0] == pytest.approx(-1.0 / n, rel=1e-5)


def test_pu_nnpu_guard_when_negative_risk_goes_below_zero() -> None:
    # [POSITIVE 0.5, NEGATIVE -1, LATE 2] (2 impressions): R- = (-log(1-f(-1)) + log(1-f(2))) / 2 < 0
    pos, neg, undo = nlog(sig(0.5)), nlog(1 - sig(-1.0)), nlog(1 - sig(2.0))
    positive_risk = (pos + nlog(sig(2.0))) / 2
    negative_risk = (neg - undo) / 2
    assert negative_risk < 0
    out = run("pu")
    assert out["nnpu_guard"] == 1.0
    assert out["loss"] == pytest.approx(positive_risk - 1.0 * negative_risk, rel=1e-6)
    # without the guard: the plain sum
    plain = run("pu", config={"pu_nnpu": False})
    assert plain["loss"] == pytest.approx(positive_risk + negative_risk, rel=1e-6)


def test_pu_undo_term_is_bounded_at_the_logit_bound() -> None:
    # a LATE_POSITIVE at logit 10 with bound 4: -log f(10) + log(1 - f(4)) >= -softplus(4)
    out = run("pu", [10.0], [1.0], [LATE_POSITIVE], config={"pu_logit_bound": 4.0, "pu_nnpu": False})
    assert out["loss"] == pytest.approx(nlog(sig(10.0)) - nlog(1 - sig(4.0)), rel=1e-6)
    assert out["loss"] > -math.log1p(math.exp(4.0))


def test_fnw_weights() -> None:
    f = [sig(x) for x in LOGITS]
    expected = ((1 + f[0]) * nlog(f[0]) + (1 - f[1]) * (1 + f[1]) * nlog(1 - f[1]) + (1 + f[2]) * nlog(f[2])) / 3
    assert run("fnw")["loss"] == pytest.approx(expected, rel=1e-6)


def test_fnw_weights_are_stop_gradient() -> None:
    loss = get_loss("fnw", LossConfig().params())
    x = tf.Variable([0.3])
    with tf.GradientTape() as tape:
        value = loss({"label": tf.constant([1.0]), "attribution": tf.constant([POSITIVE])}, {"logit": x})["loss"]
    f = sig(0.3)
    # d/dx [(1 + sg(f)) * -log f] = (1 + f) * (f - 1)
    assert float(tape.gradient(value, x)[0]) == pytest.approx((1 + f) * (f - 1), rel=1e-5)


def test_fnc_trains_with_cross_entropy() -> None:
    assert run("fnc")["loss"] == pytest.approx(run("naive")["loss"], rel=1e-7)


def test_esdfm_importance_weights_and_heads() -> None:
    dp, rn = [-1.0, -0.5, -2.0], [0.7, 1.5, 0.2]
    f_dp = [math.exp(min(x, 0.0)) for x in dp]  # p_dp = g / (1 - g) = exp(dp_logit)
    f_rn = [max(0.0, 1 - math.exp(-x)) for x in rn]  # p_rn = 2 - 1/h = 1 - exp(-rn_logit)
    f = [sig(x) for x in LOGITS]
    main = ((1 + f_dp[0]) * nlog(f[0]) + (1 + f_dp[1]) * f_rn[1] * nlog(1 - f[1]) + (1 + f_dp[2]) * nlog(f[2])) / 3
    dp_loss = (nlog(1 - sig(dp[0])) + nlog(1 - sig(dp[1])) + nlog(sig(dp[2]))) / 3  # only the LATE is 1
    rn_loss = (nlog(sig(rn[1])) + nlog(1 - sig(rn[2]))) / 2  # NEGATIVE -> 1, LATE_POSITIVE -> 0
    out = run("esdfm", dp_logit=dp, rn_logit=rn)
    assert out["main_loss"] == pytest.approx(main, rel=1e-6)
    assert out["dp_loss"] == pytest.approx(dp_loss, rel=1e-6)
    assert out["rn_loss"] == pytest.approx(rn_loss, rel=1e-6)
    assert out["loss"] == pytest.approx(main + dp_loss + rn_loss, rel=1e-6)


def test_esdfm_head_transforms_invert_the_stream_rates() -> None:
    # p_dp = 0.3: the dp head learns g = 0.3 / 1.3; p_rn = 0.6 with p_dp 0.3: h = 0.9 / 1.2
    g = 0.3 / 1.3
    assert float(delayed_positive_probability(tf.constant(math.log(g / (1 - g))))) == pytest.approx(0.3, rel=1e-5)
    h = (0.6 + 0.3) / (0.6 + 2 * 0.3)
    assert float(real_negative_probability(tf.constant(math.log(h / (1 - h))))) == pytest.approx(0.6 / 0.9, rel=1e-5)


def test_defer_importance_weights_and_dp_head() -> None:
    dp = [-1.0, -0.5, -2.0]
    f = [sig(x) for x in LOGITS]
    f_dp = [min(2 * sig(d), fi) for d, fi in zip(dp, f, strict=True)]  # p_dp = 2 g, at most f
    main = (
        f[0] / (f[0] - f_dp[0] / 2) * nlog(f[0])
        + (1 - f[1]) / (1 - f[1] + f_dp[1] / 2) * nlog(1 - f[1])
        + f[2] / (f[2] - f_dp[2] / 2) * nlog(f[2])
    ) / 3
    dp_loss = (nlog(1 - sig(dp[0])) + nlog(1 - sig(dp[1])) + nlog(sig(dp[2]))) / 3  # only the LATE is 1
    out = run("defer", dp_logit=dp, rn_logit=[0.0, 0.0, 0.0])
    assert out["main_loss"] == pytest.approx(main, rel=1e-6)
    assert out["dp_loss"] == pytest.approx(dp_loss, rel=1e-6)
    assert out["loss"] == pytest.approx(main + dp_loss, rel=1e-6)


def test_defer_weights_turn_the_duplicated_stream_back_into_the_true_rate() -> None:
    # 50 impressions at p = 0.3: 9 clicked within W (two POSITIVEs each), 6 later (a NEGATIVE, then a
    # LATE_POSITIVE: p_dp = 0.12), 35 never (two NEGATIVEs each). At the true f and f_dp the loss is flat.
    attributions = [POSITIVE] * 18 + [NEGATIVE] * 6 + [LATE_POSITIVE] * 6 + [NEGATIVE] * 70
    labels = [1.0] * 18 + [0.0] * 6 + [1.0] * 6 + [0.0] * 70
    loss = get_loss("defer", LossConfig().params())
    x = tf.Variable(tf.fill([len(labels)], float(math.log(0.3 / 0.7))))
    dp = tf.fill([len(labels)], float(math.log(0.06 / 0.94)))  # g = p_dp / 2
    targets = {"label": tf.constant(labels), "attribution": tf.constant(attributions, tf.int32)}
    with tf.GradientTape() as tape:
        main = loss(targets, {"logit": x, "dp_logit": dp, "rn_logit": tf.zeros_like(dp)})["main_loss"]
    assert float(tf.reduce_sum(tape.gradient(main, x))) == pytest.approx(0.0, abs=1e-5)
    assert float(defer.delayed_positive_probability(dp[0])) == pytest.approx(0.12, rel=1e-5)
    # plain cross-entropy on the same stream pulls the rate down to q(y=1) = 0.3 - 0.12 / 2
    with tf.GradientTape() as tape:
        naive = get_loss("naive", LossConfig().params())(targets, {"logit": x})["loss"]
    assert float(tf.reduce_sum(tape.gradient(naive, x))) > 0.01


def test_losses_read_labels_not_attributions_for_positives() -> None:
    # a file whose labels were rewritten to the truth: NEGATIVE with label 1 is a positive for every loss
    for name in ("naive", "pu", "fnw"):
        a = run(name, [0.2], [1.0], [NEGATIVE])["loss"]
        b = run(name, [0.2], [1.0], [POSITIVE])["loss"]
        assert a == pytest.approx(b)


def test_naive_matches_keras_binary_crossentropy() -> None:
    import keras

    logits = np.array([0.5, -1.0, 2.0], np.float32)
    labels = np.array([1.0, 0.0, 1.0], np.float32)
    keras_value = float(keras.losses.BinaryCrossentropy(from_logits=True)(labels, logits))
    assert run("naive")["loss"] == pytest.approx(keras_value, rel=1e-5)
