"""Clicks still to come: the delay model (:mod:`trainer.delay_model`) as part of a training state.

In stream training (the sidecar, ``fit --order stream``) a LATE_POSITIVE emitted at stream age ``A``
(its own emit time minus the stream start) is weighted ``1 / F(A)``, capped at
``loss.pending_max_weight``: it stands in for the late clicks still to come. In shuffled offline epochs
a NEGATIVE and its LATE_POSITIVE share a batch, every weight is 1, and the fit records its samples'
delays as matured history instead (the day-level hot start hands them to the next stream).

The state is saved with the checkpoint as a Python-state dependency (one JSON string: eager
``tf.Variable`` reads and writes, ten a batch, each handing the GIL to the sidecar's poller, cost more
than the estimate itself) and in the export's ``trainer.json`` (``pending_clicks``).
"""

from __future__ import annotations

import json
from typing import Any

import tensorflow as tf

from trainer.delay_model import DelayModel, Tail


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
