"""Cross network of DCN-v2 (Wang et al. 2021): explicit, bounded-degree feature crosses."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="trainer")
class CrossNetwork(keras.layers.Layer):
    """``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` for ``num_layers`` layers (full-rank ``W_l``).

    Input and output ``[batch, width]``; layer ``l`` holds every cross of degree up to ``l + 2`` of
    the input's columns. The dual DNN's teacher runs it over the field embeddings and dense values:
    the interaction the student does without.
    """

    def __init__(self, num_layers: int = 2, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.num_layers = int(num_layers)
        self.seed = int(seed)

    def build(self, input_shape: Any) -> None:
        width = int(input_shape[-1])
        self.kernels = [
            self.add_weight(
                name=f"kernel_{i}",
                shape=(width, width),
                initializer=keras.initializers.GlorotUniform(seed=self.seed + i),
            )
            for i in range(self.num_layers)
        ]
        self.biases = [
            self.add_weight(name=f"bias_{i}", shape=(width,), initializer="zeros") for i in range(self.num_layers)
        ]

    def call(self, x0: Any) -> Any:
        x = x0
        for kernel, bias in zip(self.kernels, self.biases, strict=True):
            x = x0 * (ops.matmul(x, kernel) + bias) + x
        return x

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_layers": self.num_layers, "seed": self.seed}
