"""``fnc``: fake-negative calibration (Ktena et al. 2019)."""

from __future__ import annotations

import tensorflow as tf

from trainer.losses.base import DelayedFeedbackLoss, cross_entropy


class FNCLoss(DelayedFeedbackLoss):
    """Cross-entropy on the stream; the served function calibrates ``p = b / (1 - b)`` (clipped).

    See :class:`trainer.layers.Calibration` (mode ``fnc``), which the export puts in the served function.
    """

    name = "fnc"
    calibration = "fnc"

    def compute(
        self, label: tf.Tensor, late: tf.Tensor, late_weight: tf.Tensor, outputs: dict[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        return {"loss": tf.reduce_mean(cross_entropy(label, outputs["logit"]))}
