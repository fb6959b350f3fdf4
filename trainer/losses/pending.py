"""Clicks still to come: the delay model (:mod:`trainer.delay_model`) as part of a training state.

In stream training (the sidecar, ``fit --order stream``) a LATE_POSITIVE emitted at stream age ``A``
(its own emit time minus the stream start) is weighted ``1 / F(A)``, capped at
``loss.pending_max_weight``: it stands in for the late clicks still to come. In shuffled offline epochs
a NEGATIVE and its LATE_POSITIVE share a batch, every weight is 1, and the fit records its samples'
delays as matured history instead (the day-level hot start hands them to the next stream).

The state is saved with the checkpoint as a Python-state dependency (one JSON string: eager
``tf.Variable`` reads and writes, ten a batch, each handing the GIL to the sidecar's poller, cost more
than the estimate itself) and in the export's ``trainer.json`` (``pending_clicks``).

Where the extra weight goes (``loss.pending_on``): the ``1 / F - 1`` on top of each live LATE_POSITIVE
stands in for clicks that have not arrived; putting it on the few that did (short delays, weights up to
the cap) is unbiased in level but noisy, and costs ranking (AUC ~0.002 below naive on uniform delays
with a day-level hot start). :func:`spread_over_negatives` puts the same total on the batch's NEGATIVEs,
each in proportion to the model's click probability: the undo terms of the impressions most likely
to be the ones still waiting. A model trained on a previous day ranks them well; a cold one does not
(measured: -0.01 to -0.02 AUC cold at 80% late), hence ``auto``.
"""

from __future__ import annotations

import json
from typing import Any

import tensorflow as tf

from trainer.delay_model import DelayModel, Tail


def spread_over_negatives(
    label: tf.Tensor, late: tf.Tensor, late_weight: tf.Tensor, logit: tf.Tensor, share: tf.Tensor
) -> tf.Tensor:
    """Per-sample undo weights: ``share`` of the batch's extra LATE_POSITIVE weight (``late_weight -
    late``) moved onto its NEGATIVEs in proportion to ``sigmoid(logit)`` (not differentiated); the batch
    total is unchanged. ``share`` 0 returns ``late_weight``; so does a batch without NEGATIVEs (the tail
    of a finished file), whose extra weight stays on its late positives instead of being dropped."""
    excess = late_weight - late
    expected = tf.stop_gradient(tf.sigmoid(logit)) * (1.0 - label)
    total = tf.reduce_sum(expected)
    spread = tf.reduce_sum(excess) * expected / tf.maximum(total, 1e-12)
    share = share * tf.cast(total > 0.0, share.dtype)
    return late_weight + share * (spread - excess)


class PendingClicks(DelayModel, tf.train.experimental.PythonState):
    """:class:`~trainer.delay_model.DelayModel`, checkpointable; :meth:`observe` per batch."""

    def __init__(self, horizon_ms: float, max_weight: float, tail: Tail = "blend", learn_from_stream: bool = True):
        DelayModel.__init__(self, horizon_ms, max_weight, tail, learn_from_stream)

    # tf.train.Checkpoint hooks: the state as one JSON string.
    def serialize(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    def deserialize(self, string_value: Any) -> None:
        text = string_value.decode() if isinstance(string_value, bytes) else str(string_value)
        self.load_json(json.loads(text))
