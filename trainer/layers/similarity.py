"""The two-tower score: similarity of a user and an item vector, scaled and shifted into a logit."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

SIMILARITIES = ("cosine", "dot")
EPSILON = 1e-12


def unit_rows(x: Any) -> Any:
    """Each row over its L2 norm (a zero row stays zero)."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), EPSILON))


@keras.saving.register_keras_serializable(package="trainer")
class Similarity(keras.layers.Layer):
    """``logit = sim(u, v) / temperature + bias``, temperature and bias learned.

    ``cosine``: the vectors are normalised first (the score is bounded, so the temperature sets its
    range); ``dot``: the plain inner product. Inputs ``u`` ``[batch or 1, k]`` and ``v``
    ``[batch, k]`` (a single ``u`` is broadcast: one user against many items); output ``[batch]``.
    The temperature is kept as its log (always positive).
    """

    def __init__(
        self, kind: str = "cosine", init_temperature: float = 0.1, bias_init: float = 0.0, **kwargs: Any
    ):
        super().__init__(**kwargs)
        if kind not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")
        if init_temperature <= 0:
            raise ValueError(f"init_temperature must be positive, got {init_temperature}")
        self.kind = kind
        self.init_temperature = float(init_temperature)
        self.bias_init = float(bias_init)

    def build(self, input_shape: Any = None) -> None:
        self.log_temperature = self.add_weight(
            name="log_temperature", shape=(), initializer=keras.initializers.Constant(math.log(self.init_temperature))
        )
        self.bias = self.add_weight(name="bias", shape=(), initializer=keras.initializers.Constant(self.bias_init))

    def vectors(self, x: Any) -> Any:
        """What is compared: the unit vector (cosine) or the vector itself (dot)."""
        return unit_rows(x) if self.kind == "cosine" else x

    def call(self, u: Any, v: Any) -> Any:
        score = ops.sum(self.vectors(u) * self.vectors(v), axis=-1)
        return score * ops.exp(-self.log_temperature) + self.bias

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "kind": self.kind,
            "init_temperature": self.init_temperature,
            "bias_init": self.bias_init,
        }
