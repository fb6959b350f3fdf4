"""``naive``: cross-entropy on the stream as it is."""

from __future__ import annotations

import tensorflow as tf

from trainer.losses.base import DelayedFeedbackLoss, cross_entropy


class NaiveLoss(DelayedFeedbackLoss):
    """Every sample's label taken at face value (a late positive's earlier fake negative included)."""

    name = "naive"

    def compute(
        self, label: tf.Tensor, late: tf.Tensor, late_weight: tf.Tensor, outputs: dict[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        return {"loss": tf.reduce_mean(cross_entropy(label, outputs["logit"]))}
