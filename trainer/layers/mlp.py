"""A stack of ReLU layers and a linear output: the deep part's MLP, the dual DNN's nets, the towers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras


def hidden_stack(
    units: Sequence[int], dropout: float, seed: int, bias_init: float = 0.0
) -> tuple[list[Any], list[Any]]:
    """ReLU Dense layers ``hidden_i`` and their Dropout layers ``dropout_i`` (seeded from ``seed``)."""
    bias = {"bias_initializer": keras.initializers.Constant(bias_init)} if bias_init else {}
    hidden = [
        keras.layers.Dense(
            n,
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1 + i),
            name=f"hidden_{i}",
            **bias,
        )
        for i, n in enumerate(units)
    ]
    dropouts = [keras.layers.Dropout(dropout, seed=seed + 50 + i, name=f"dropout_{i}") for i in range(len(units))]
    return hidden, dropouts


def build_stack(hidden: Sequence[Any], width: int) -> int:
    """Build ``hidden`` on inputs of ``width`` columns; returns the width out."""
    for layer in hidden:
        layer.build((None, width))
        width = layer.units
    return width


def run_stack(x: Any, hidden: Sequence[Any], dropouts: Sequence[Any], dropout: float, training: bool) -> Any:
    for layer, drop in zip(hidden, dropouts, strict=True):
        x = layer(x)
        if dropout:
            x = drop(x, training=training)
    return x


@keras.saving.register_keras_serializable(package="trainer")
class MLP(keras.layers.Layer):
    """``hidden_units`` ReLU layers (dropout after each when training), then a linear ``output``.

    Input ``[batch, width]``; output a dict: ``hidden`` (the last hidden layer; the input itself when
    there is none) and ``output`` ``[batch, output_units]`` (``[batch]`` when ``output_units`` is 1).

    ``hidden_bias_init`` > 0 keeps the ReLUs open on an all-zero input: a network over embedding rows
    that start at zero (the two towers) would otherwise pass them no gradient, ever (ReLU'(0) = 0).
    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (64, 32),
        output_units: int = 1,
        dropout: float = 0.0,
        output_bias_init: float = 0.0,
        hidden_bias_init: float = 0.0,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.hidden_units = [int(n) for n in hidden_units]
        self.output_units = int(output_units)
        self.dropout = float(dropout)
        self.output_bias_init = float(output_bias_init)
        self.hidden_bias_init = float(hidden_bias_init)
        self.seed = int(seed)
        self.hidden_layers, self.dropout_layers = hidden_stack(
            self.hidden_units, self.dropout, self.seed, self.hidden_bias_init
        )
        self.output_layer = keras.layers.Dense(
            self.output_units,
            kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed + 100),
            bias_initializer=keras.initializers.Constant(self.output_bias_init),
            name="output",
        )

    def build(self, input_shape: Any) -> None:
        width = build_stack(self.hidden_layers, int(input_shape[-1]))
        self.output_layer.build((None, width))

    def call(self, x: Any, training: bool = False) -> dict[str, Any]:
        hidden = run_stack(x, self.hidden_layers, self.dropout_layers, self.dropout, training)
        output = self.output_layer(hidden)
        return {"hidden": hidden, "output": output[:, 0] if self.output_units == 1 else output}

    @property
    def bias(self) -> Any:
        """The output layer's bias (the model's global bias where it has no other)."""
        return self.output_layer.bias

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "output_units": self.output_units,
            "dropout": self.dropout,
            "output_bias_init": self.output_bias_init,
            "hidden_bias_init": self.hidden_bias_init,
            "seed": self.seed,
        }
