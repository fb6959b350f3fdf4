"""Factorization-machine interaction layer (Rendle 2010)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="trainer")
class FactorizationMachine(keras.layers.Layer):
    """Second-order FM term of field vectors: ``sum_{i<j} <v_i, v_j>``.

    Input ``[batch, fields, k]`` (each field's factor vector, already scaled by its value); output
    ``[batch]``, computed in O(fields * k) as ``0.5 * sum_k((sum_i v_ik)^2 - sum_i v_ik^2)``.
    """

    def call(self, vectors: Any) -> Any:
        summed = ops.sum(vectors, axis=1)
        return 0.5 * ops.sum(ops.square(summed) - ops.sum(ops.square(vectors), axis=1), axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0],)

    def get_config(self) -> dict[str, Any]:
        return super().get_config()
