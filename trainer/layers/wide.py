"""The wide part: first-order weights of sparse IDs, crosses and dense values, plus FM factors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops


def field_offsets(sizes: Sequence[int]) -> list[int]:
    """Row offset of each field in a table that stacks the fields' rows."""
    out, total = [], 0
    for n in sizes:
        out.append(total)
        total += n
    return out


@keras.saving.register_keras_serializable(package="trainer")
class WideLayer(keras.layers.Layer):
    """Wide part of the iQIYI Wide & Deep model (its variables are trained with FTRL).

    Inputs: ``base_ids`` int ``[batch, len(field_sizes)]`` (per-field local ids), ``cross_ids``
    ``[batch, len(cross_sizes)]``, ``dense`` ``[batch, num_dense]``. Outputs a dict: ``linear``
    ``[batch]`` (bias + weights of every id, cross and dense value) and ``factors``
    ``[batch, fields, factor_dim]`` (each base id's FM vector, for the wide FM layer).
    """

    def __init__(
        self,
        field_sizes: Sequence[int],
        cross_sizes: Sequence[int] = (),
        num_dense: int = 0,
        factor_dim: int = 4,
        init_stddev: float = 0.01,
        bias_init: float = 0.0,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.field_sizes = [int(n) for n in field_sizes]
        self.cross_sizes = [int(n) for n in cross_sizes]
        self.num_dense = int(num_dense)
        self.factor_dim = int(factor_dim)
        self.init_stddev = float(init_stddev)
        self.bias_init = float(bias_init)
        self.seed = int(seed)
        self._field_offsets = field_offsets(self.field_sizes)
        self._cross_offsets = field_offsets(self.cross_sizes)

    def build(self, input_shape: Any = None) -> None:
        rows = sum(self.field_sizes)
        self.bias = self.add_weight(name="bias", shape=(), initializer=keras.initializers.Constant(self.bias_init))
        self.linear = self.add_weight(name="linear", shape=(rows, 1), initializer="zeros")
        if self.cross_sizes:  # no variable without a gradient
            self.cross_linear = self.add_weight(
                name="cross_linear", shape=(sum(self.cross_sizes), 1), initializer="zeros"
            )
        if self.num_dense:
            self.dense_weights = self.add_weight(name="dense_weights", shape=(self.num_dense,), initializer="zeros")
        self.factors = self.add_weight(
            name="factors",
            shape=(rows, self.factor_dim),
            initializer=keras.initializers.RandomNormal(stddev=self.init_stddev, seed=self.seed),
        )

    def call(self, base_ids: Any, cross_ids: Any, dense: Any) -> dict[str, Any]:
        rows = ops.cast(base_ids, "int32") + ops.convert_to_tensor(self._field_offsets, "int32")
        linear = self.bias + ops.sum(ops.take(self.linear, rows, axis=0)[..., 0], axis=1)
        if self.cross_sizes:
            cross_rows = ops.cast(cross_ids, "int32") + ops.convert_to_tensor(self._cross_offsets, "int32")
            linear = linear + ops.sum(ops.take(self.cross_linear, cross_rows, axis=0)[..., 0], axis=1)
        if self.num_dense:
            linear = linear + ops.sum(dense * self.dense_weights, axis=1)
        return {"linear": linear, "factors": ops.take(self.factors, rows, axis=0)}

    def row_tables(self) -> list[tuple[Any, str]]:
        """Per-id tables (variable, initial distribution) that a reused vocabulary slot must reset."""
        return [(self.linear, "zeros"), (self.factors, "normal")]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "field_sizes": self.field_sizes,
            "cross_sizes": self.cross_sizes,
            "num_dense": self.num_dense,
            "factor_dim": self.factor_dim,
            "init_stddev": self.init_stddev,
            "bias_init": self.bias_init,
            "seed": self.seed,
        }
