"""``defer``: DEFER, continuous training with real negatives (Gu et al., KDD 2021).

DEFER's stream ingests every impression twice: first as the join emits it (a POSITIVE within the window
``W``, else a NEGATIVE), then once more, with its label as known then: a late click's LATE_POSITIVE, or, at
the attribution horizon ``H``, a duplicate of a POSITIVE or of a NEGATIVE that stayed unclicked (a real
negative). The join emits no such duplicate; ``fit`` adds them (:mod:`trainer.replay`).
"""

from __future__ import annotations

import tensorflow as tf

from trainer.losses.base import DelayedFeedbackLoss, ce_negative, ce_positive, cross_entropy


def delayed_positive_probability(dp_logit: tf.Tensor) -> tf.Tensor:
    """f_dp = P(delay > W, y = 1 | x) from the dp head, at most 1.

    The head is trained on the stream to tell LATE_POSITIVE samples from the others; each impression
    gives two samples, ``p_dp`` of them late, so the head learns ``g = p_dp / 2`` and ``p_dp = 2 g``.
    """
    return tf.minimum(2.0 * tf.sigmoid(dp_logit), 1.0)


class DEFERLoss(DelayedFeedbackLoss):
    """Importance-weighted cross-entropy of DEFER's duplicated stream.

    The stream's label distribution is ``q(y=1|x) = p - p_dp / 2`` (an in-window positive is seen twice
    as a positive, a delayed one once as a negative and once as a positive, a real negative twice as a
    negative). Positives are weighted ``f / (f - f_dp / 2)``, negatives ``(1 - f) / (1 - f + f_dp / 2)``
    (stop-gradient; ``f_dp`` at most ``f``, so the positive weight is at most 2), which turns ``q`` back
    into the true ``p``. The dp head is trained alongside (weight ``esdfm_aux_weight``) on every sample:
    is it a LATE_POSITIVE? The rn head, which the model builds with it, is not used.
    """

    name = "defer"
    aux_heads = True

    def compute(
        self, label: tf.Tensor, late: tf.Tensor, late_weight: tf.Tensor, outputs: dict[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        logit, dp_logit = outputs["logit"], outputs["dp_logit"]
        f = tf.stop_gradient(tf.sigmoid(logit))
        f_dp = tf.stop_gradient(tf.minimum(delayed_positive_probability(dp_logit), f))
        positive_weight = f / tf.maximum(f - 0.5 * f_dp, 1e-6)
        negative_weight = (1.0 - f) / (1.0 - f + 0.5 * f_dp)
        weighted = label * positive_weight * ce_positive(logit) + (1.0 - label) * negative_weight * ce_negative(logit)
        main = tf.reduce_mean(weighted)
        dp_loss = tf.reduce_mean(cross_entropy(late, dp_logit))
        # The rn head gets a zero gradient rather than none (Keras warns of each variable without one).
        unused = 0.0 * tf.reduce_mean(outputs["rn_logit"])
        loss = main + self.params.esdfm_aux_weight * dp_loss + unused
        return {"loss": loss, "main_loss": main, "dp_loss": dp_loss}
