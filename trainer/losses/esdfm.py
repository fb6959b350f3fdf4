"""``esdfm``: elapsed-time sampling delayed-feedback model (Yang et al., AAAI 2021)."""

from __future__ import annotations

import tensorflow as tf

from trainer.losses.base import DelayedFeedbackLoss, ce_negative, ce_positive, cross_entropy


def delayed_positive_probability(dp_logit: tf.Tensor) -> tf.Tensor:
    """f_dp = P(delay > W, y = 1 | x) from the dp head.

    The head is trained on the stream to tell LATE_POSITIVE samples from the others; on the stream an
    impression gives ``1 + p_dp`` samples of which ``p_dp`` are late, so the head learns
    ``g = p_dp / (1 + p_dp)`` and ``p_dp = g / (1 - g) = exp(dp_logit)``, clipped to [0, 1].
    """
    return tf.exp(tf.minimum(dp_logit, 0.0))


def real_negative_probability(rn_logit: tf.Tensor) -> tf.Tensor:
    """f_rn = P(real negative | observed NEGATIVE) from the rn head.

    The head is trained on NEGATIVE samples (target 1) against LATE_POSITIVE samples (target 0): the
    NEGATIVEs hold the real negatives (rate p_rn = 1 - p) and the fake ones (p_dp), the LATE_POSITIVEs
    the fake ones again, so it learns ``h = (p_rn + p_dp) / (p_rn + 2 p_dp)`` and
    ``p_rn / (p_rn + p_dp) = 2 - 1/h = 1 - exp(-rn_logit)``, clipped to [0, 1].
    """
    return tf.clip_by_value(1.0 - tf.exp(-rn_logit), 0.0, 1.0)


class ESDFMLoss(DelayedFeedbackLoss):
    """Importance-weighted cross-entropy of the ES-DFM stream (wait W, then a delayed-positive duplicate).

    Observed positives (POSITIVE and LATE_POSITIVE) are weighted ``1 + f_dp``, observed negatives
    ``(1 + f_dp) f_rn`` (both stop-gradient), which turns the stream's distribution
    ``q(y=1|x) = p / (1 + p_dp)`` back into the true one. The auxiliary heads are trained alongside
    (weight ``esdfm_aux_weight``): dp on every sample (is it a LATE_POSITIVE?), rn on NEGATIVE (1)
    vs LATE_POSITIVE (0) samples.
    """

    name = "esdfm"
    aux_heads = True

    def compute(
        self, label: tf.Tensor, late: tf.Tensor, late_weight: tf.Tensor, outputs: dict[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        logit, dp_logit, rn_logit = outputs["logit"], outputs["dp_logit"], outputs["rn_logit"]
        f_dp = tf.stop_gradient(delayed_positive_probability(dp_logit))
        f_rn = tf.stop_gradient(real_negative_probability(rn_logit))
        main = tf.reduce_mean(
            label * (1.0 + f_dp) * ce_positive(logit) + (1.0 - label) * (1.0 + f_dp) * f_rn * ce_negative(logit)
        )
        dp_loss = tf.reduce_mean(cross_entropy(late, dp_logit))
        rn_mask = (1.0 - label) + late  # NEGATIVE and LATE_POSITIVE samples
        rn_target = 1.0 - label  # NEGATIVE -> 1, LATE_POSITIVE -> 0
        rn_loss = tf.reduce_sum(rn_mask * cross_entropy(rn_target, rn_logit)) / tf.maximum(tf.reduce_sum(rn_mask), 1.0)
        loss = main + self.params.esdfm_aux_weight * (dp_loss + rn_loss)
        return {"loss": loss, "main_loss": main, "dp_loss": dp_loss, "rn_loss": rn_loss}
