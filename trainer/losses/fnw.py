"""``fnw``: fake-negative weighting (Ktena et al. 2019)."""

from __future__ import annotations

import tensorflow as tf

from trainer.losses.base import DelayedFeedbackLoss, ce_negative, ce_positive


class FNWLoss(DelayedFeedbackLoss):
    """Importance weights derived for a zero window, where every positive first appeared as a negative.

    Positives are weighted ``1 + sg(f)``, negatives ``(1 - sg(f)) (1 + sg(f))`` (sg: stop-gradient).
    With a 10-minute window, positives inside it never were negatives: an approximation.
    """

    name = "fnw"

    def compute(
        self, label: tf.Tensor, late: tf.Tensor, late_weight: tf.Tensor, outputs: dict[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        logit = outputs["logit"]
        f = tf.stop_gradient(tf.sigmoid(logit))
        per_sample = label * (1.0 + f) * ce_positive(logit) + (1.0 - label) * (1.0 - f) * (1.0 + f) * ce_negative(logit)
        return {"loss": tf.reduce_mean(per_sample)}
