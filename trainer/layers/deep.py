"""The deep part: field embeddings (the deep FM's vectors) and an MLP over them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from trainer.layers.embedding import embed_fields, embedded_width
from trainer.layers.mlp import build_stack, hidden_stack, run_stack
from trainer.layers.wide import field_offsets


@keras.saving.register_keras_serializable(package="trainer")
class DeepLayer(keras.layers.Layer):
    """Deep part of the iQIYI Wide & Deep model (its variables are trained with Adam).

    Inputs: ``base_ids`` int ``[batch, len(field_sizes)]`` (per-column local ids; ``column_groups``:
    the columns summed into one field, see :func:`~trainer.layers.embedding.embed_fields`) and ``dense``
    ``[batch, num_dense]``. Outputs a dict: ``vectors`` ``[batch, fields + num_dense, dim]`` (id
    embeddings, and each dense value times its own vector: the deep FM layer's input), ``hidden``
    (the MLP's last hidden layer), ``output`` ``[batch]`` (the MLP's logit contribution) and
    ``l2`` (sum of squares of the embedding rows used, averaged over the batch).
    """

    def __init__(
        self,
        field_sizes: Sequence[int],
        num_dense: int = 0,
        embedding_dim: int = 8,
        hidden_units: Sequence[int] = (64, 32),
        init_stddev: float = 0.01,
        dropout: float = 0.0,
        seed: int = 0,
        column_groups: Sequence[int] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.field_sizes = [int(n) for n in field_sizes]
        self.num_dense = int(num_dense)
        self.embedding_dim = int(embedding_dim)
        self.hidden_units = [int(n) for n in hidden_units]
        self.init_stddev = float(init_stddev)
        self.dropout = float(dropout)
        self.seed = int(seed)
        self._field_offsets = field_offsets(self.field_sizes)
        self.column_groups = list(column_groups) if column_groups is not None else None
        self._width = embedded_width(self.column_groups, len(self.field_sizes), self.embedding_dim)
        self.hidden_layers, self.dropout_layers = hidden_stack(self.hidden_units, self.dropout, self.seed)
        self.output_layer = keras.layers.Dense(
            1, kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed + 100), name="output"
        )

    def build(self, input_shape: Any = None) -> None:
        normal = keras.initializers.RandomNormal(stddev=self.init_stddev, seed=self.seed)
        self.embeddings = self.add_weight(
            name="embeddings", shape=(sum(self.field_sizes), self.embedding_dim), initializer=normal
        )
        if self.num_dense:  # no variable without a gradient
            self.dense_vectors = self.add_weight(
                name="dense_vectors",
                shape=(self.num_dense, self.embedding_dim),
                initializer=keras.initializers.RandomNormal(stddev=self.init_stddev, seed=self.seed + 200),
            )
        width = build_stack(self.hidden_layers, self._width + self.num_dense)
        self.output_layer.build((None, width))

    def call(self, base_ids: Any, dense: Any, training: bool = False) -> dict[str, Any]:
        dense_vectors = self.dense_vectors if self.num_dense else None
        fields = embed_fields(
            self.embeddings, dense_vectors, self._field_offsets, base_ids, dense, self.column_groups
        )
        hidden = run_stack(fields["flat"], self.hidden_layers, self.dropout_layers, self.dropout, training)
        return {
            "vectors": fields["vectors"],
            "hidden": hidden,
            "output": self.output_layer(hidden)[:, 0],
            "l2": fields["l2"],
        }

    def row_tables(self) -> list[tuple[Any, str]]:
        """Per-id tables (variable, initial distribution) that a reused vocabulary slot must reset."""
        return [(self.embeddings, "normal")]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "field_sizes": self.field_sizes,
            "num_dense": self.num_dense,
            "embedding_dim": self.embedding_dim,
            "hidden_units": self.hidden_units,
            "init_stddev": self.init_stddev,
            "dropout": self.dropout,
            "seed": self.seed,
            "column_groups": self.column_groups,
        }
