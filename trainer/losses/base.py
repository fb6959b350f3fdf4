"""Common parts of the delayed-feedback losses (docs/trainer.md).

A loss takes the batch's targets and the model's outputs and returns a dict whose ``loss`` entry is
the scalar to minimise (batch mean). Targets:

- ``label`` float ``[batch]``: the sample's label (1 for POSITIVE and LATE_POSITIVE, 0 for NEGATIVE);
- ``attribution`` int ``[batch]``: :data:`~trainer.samples.POSITIVE`, ``NEGATIVE`` or ``LATE_POSITIVE``;
- ``late_weight`` float ``[batch]`` (optional, 1 when absent): the weight of a live LATE_POSITIVE, which
  stands in for the late clicks still to come (:mod:`trainer.losses.pending`); 1 for other samples.
- ``pending_on_negatives`` float ``[]`` (optional, 0 when absent): the share of that extra weight
  spread over the batch's NEGATIVEs (:func:`~trainer.losses.pending.spread_over_negatives`), whose
  ``late_weight`` passed to :meth:`DelayedFeedbackLoss.compute` is then their undo terms' weight.

Outputs: ``logit`` ``[batch]`` (x, with f = sigmoid(x)); ``dp_logit`` and ``rn_logit`` from the
auxiliary heads when the loss asks for them (``aux_heads``).

Losses look only at ``label`` and at whether a positive is a LATE_POSITIVE, so a file whose labels were
rewritten (e.g. to the true labels) is read consistently.
"""

from __future__ import annotations

from typing import ClassVar

import tensorflow as tf

from trainer.losses.params import LossParams
from trainer.losses.pending import spread_over_negatives
from trainer.samples import LATE_POSITIVE


def ce_positive(logit: tf.Tensor) -> tf.Tensor:
    """-log f, computed stably from the logit."""
    return tf.nn.softplus(-logit)


def ce_negative(logit: tf.Tensor) -> tf.Tensor:
    """-log(1 - f), computed stably from the logit."""
    return tf.nn.softplus(logit)


def cross_entropy(label: tf.Tensor, logit: tf.Tensor) -> tf.Tensor:
    return label * ce_positive(logit) + (1.0 - label) * ce_negative(logit)


class DelayedFeedbackLoss:
    """Base class; subclasses implement :meth:`compute`."""

    name: ClassVar[str] = ""
    aux_heads: ClassVar[bool] = False  # needs the f_dp / f_rn heads
    calibration: ClassVar[str] = "identity"  # what the served function applies to sigmoid(logit)

    def __init__(self, params: LossParams):
        self.params = params

    def __call__(self, targets: dict[str, tf.Tensor], outputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        label = tf.cast(targets["label"], tf.float32)
        late = tf.cast(
            tf.logical_and(tf.equal(tf.cast(targets["attribution"], tf.int32), LATE_POSITIVE), label > 0.5), tf.float32
        )
        weight = targets.get("late_weight")
        late_weight = late if weight is None else late * tf.cast(weight, tf.float32)
        share = targets.get("pending_on_negatives")
        if share is not None:
            late_weight = spread_over_negatives(label, late, late_weight, outputs["logit"], share)
        return self.compute(label, late, late_weight, outputs)

    def compute(
        self, label: tf.Tensor, late: tf.Tensor, late_weight: tf.Tensor, outputs: dict[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        """``late``: 1 on LATE_POSITIVEs; ``late_weight``: the weight of each sample's undo term (a
        LATE_POSITIVE's; a NEGATIVE's share of the clicks still to come; 0 elsewhere)."""
        raise NotImplementedError
