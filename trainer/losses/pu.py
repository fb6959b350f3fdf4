"""``pu``: positive-unlabeled correction of fake negatives (Ktena et al. 2019; iQIYI ODL's PU loss)."""

from __future__ import annotations

import tensorflow as tf

from trainer.losses.base import DelayedFeedbackLoss, ce_negative, ce_positive


class PULoss(DelayedFeedbackLoss):
    """POSITIVE and NEGATIVE: cross-entropy. LATE_POSITIVE: ``-log f + log(1 - f)``.

    The LATE_POSITIVE term undoes the step taken on the impression's earlier fake NEGATIVE: summed
    with it, ``-log(1 - f) - log f + log(1 - f) = -log f``, the cross-entropy of the true label.
    On its own it equals ``-x`` and is unbounded below, so it is kept stable in two ways:

    - per sample, the undo part ``log(1 - f)`` is taken at ``min(x, pu_logit_bound)``: the term is
      bounded below by ``-softplus(bound)`` and, past the bound, pulls like a plain positive;
    - per batch (nnPU, Kiryo et al. 2017), the negative-class risk
      ``R- = mean(NEGATIVE: -log(1 - f)) - mean(LATE_POSITIVE: -log(1 - f))`` estimates the loss of
      the true negatives and cannot be negative; when it falls below ``-beta`` the step minimises
      ``R+ - gamma * R-`` (pushing ``R-`` back up) instead of ``R+ + R-``.

    Online, a live LATE_POSITIVE carries ``late_weight`` = 1 / F(stream age) (the whole term is
    weighted): in a stream younger than the attribution horizon only a share F of the late clicks can
    have arrived, and the ones that did stand in for those still to come (:mod:`trainer.losses.pending`).

    The guard looks at one batch: in a stream batch of mostly LATE_POSITIVEs (the tail of a finished
    file, which no live stream has) it fires and the late positives pull like weak positives instead
    of undoing; in live emission order batches are mixed and it does not fire.

    Both risks are averaged over the batch's impressions (samples minus LATE_POSITIVEs, at least half
    the samples). With a
    NEGATIVE and its LATE_POSITIVE in the same batch (what ``fit`` does offline) ``R-`` is a sum of
    true negatives' losses, the guard never fires, and the step equals the one on the true labels.
    """

    name = "pu"

    def compute(
        self, label: tf.Tensor, late: tf.Tensor, late_weight: tf.Tensor, outputs: dict[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        cfg = self.params
        logit = outputs["logit"]
        # Risks per impression: a LATE_POSITIVE corrects its impression's NEGATIVE, it is not another
        # one. Offline every LATE_POSITIVE shares the batch with its NEGATIVE (impressions >= samples / 2);
        # the floor keeps the step size sane for a streaming batch of nothing but late positives.
        samples = tf.cast(tf.size(logit), tf.float32)
        n = tf.maximum(samples - tf.reduce_sum(late), tf.maximum(samples / 2.0, 1.0))
        # A live LATE_POSITIVE also stands in for the late clicks still to come (weight >= 1).
        positive_weight = label - late + late_weight
        positive_risk = tf.reduce_sum(positive_weight * ce_positive(logit)) / n
        undo = ce_negative(tf.minimum(logit, cfg.pu_logit_bound))
        negative_risk = (tf.reduce_sum((1.0 - label) * ce_negative(logit)) - tf.reduce_sum(late_weight * undo)) / n
        loss = positive_risk + negative_risk
        guarded = tf.constant(False)
        if cfg.pu_nnpu:
            guarded = negative_risk < -cfg.pu_nnpu_beta
            loss = tf.where(guarded, positive_risk - cfg.pu_nnpu_gamma * negative_risk, loss)
        return {"loss": loss, "negative_risk": negative_risk, "nnpu_guard": tf.cast(guarded, tf.float32)}
