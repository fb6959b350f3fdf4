"""Prediction-time calibration, part of the served function."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

CALIBRATIONS = ("identity", "fnc")


def calibrated(probability: Any, mode: str, max_probability: float, xp: Any = ops) -> Any:
    """The served probability for the model's ``probability`` (see :class:`Calibration`); ``xp`` is the
    array module: ``keras.ops`` in the served graph, ``numpy`` where the sidecar scores its evidence."""
    if mode == "identity":
        return probability
    # b / (1 - b) <= m  <=>  b <= m / (1 + m): clip b first so the division stays finite.
    b = xp.clip(probability, 0.0, max_probability / (1.0 + max_probability))
    return b / (1.0 - b)


@keras.saving.register_keras_serializable(package="trainer")
class Calibration(keras.layers.Layer):
    """Maps the model's probability ``b`` to the served one.

    ``identity``: ``p = b``. ``fnc`` (fake-negative calibration, Ktena et al. 2019): a model trained
    with cross-entropy on a stream where every positive also appeared as a negative learns
    ``b = p / (1 + p)``, so ``p = b / (1 - b)``, clipped to ``[0, max_probability]``.
    """

    def __init__(self, mode: str = "identity", max_probability: float = 0.999, **kwargs: Any):
        super().__init__(**kwargs)
        if mode not in CALIBRATIONS:
            raise ValueError(f"calibration mode must be one of {CALIBRATIONS}, got {mode!r}")
        self.mode = mode
        self.max_probability = float(max_probability)

    def call(self, probability: Any) -> Any:
        return calibrated(probability, self.mode, self.max_probability)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "max_probability": self.max_probability}
