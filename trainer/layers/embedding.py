"""Field embeddings: one stacked table of every id column's rows, and a vector per dense value.

A field is one id column (a tracked or hashed field, each sub-table of a multi-hash field combined by
``concat``) or several consecutive ones summed (a multi-hash field combined by ``sum``):
``column_groups`` says how many columns make each field (None: one each).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from trainer.layers.multi_hash import check_column_groups, combine_columns
from trainer.layers.wide import field_offsets

INITIALIZERS = ("normal", "zeros")


def embedded_width(column_groups: Sequence[int] | None, columns: int, embedding_dim: int) -> int:
    """Width of :func:`embed_fields`' ``flat`` without the dense values: fields x dim."""
    return len(check_column_groups(column_groups, columns)) * embedding_dim


def embed_fields(
    embeddings: Any,
    dense_vectors: Any,
    offsets: Sequence[int],
    base_ids: Any,
    dense: Any,
    column_groups: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Look up each id column's row and lay the fields out for the layers above.

    ``embedded`` ``[batch, fields, dim]`` (each group of ``column_groups`` summed); ``vectors``
    (``embedded``, then each dense value times its own vector: an FM layer's input); ``flat``
    (``embedded`` flattened, then the dense values: an MLP's input); ``l2`` (sum of squares of the rows
    used, before any sum, averaged over the batch). ``dense_vectors`` is None when there is no dense field.
    """
    rows = ops.cast(base_ids, "int32") + ops.convert_to_tensor(list(offsets), "int32")
    looked_up = ops.take(embeddings, rows, axis=0)
    l2 = ops.mean(ops.sum(ops.square(looked_up), axis=(1, 2)))
    groups = check_column_groups(column_groups, len(offsets))
    embedded = combine_columns(looked_up, groups)
    flat = ops.reshape(embedded, (-1, len(groups) * int(embeddings.shape[1])))
    vectors = embedded
    if dense_vectors is not None:
        flat = ops.concatenate([flat, dense], axis=1)
        scaled = ops.expand_dims(dense, -1) * ops.expand_dims(dense_vectors, 0)
        vectors = ops.concatenate([embedded, scaled], axis=1)
    return {"embedded": embedded, "vectors": vectors, "flat": flat, "l2": l2}


@keras.saving.register_keras_serializable(package="trainer")
class FieldEmbedding(keras.layers.Layer):
    """The embedding table shared by the parts of a model (the dual DNN's teacher and student, the two
    towers). Rows start ``normal`` (stddev ``init_stddev``) or at ``zeros`` (rows trained by FTRL with
    L1, which stay exactly zero until their gradients outweigh the L1 term).

    Call ``(base_ids, dense)``: see :func:`embed_fields` (``column_groups``: the fields' id columns,
    :attr:`~trainer.features.FeatureSpec.column_groups`). :meth:`lookup` takes global rows directly.
    """

    def __init__(
        self,
        field_sizes: Sequence[int],
        num_dense: int = 0,
        embedding_dim: int = 8,
        init_stddev: float = 0.01,
        initializer: str = "normal",
        seed: int = 0,
        column_groups: Sequence[int] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if initializer not in INITIALIZERS:
            raise ValueError(f"initializer must be one of {INITIALIZERS}, got {initializer!r}")
        self.field_sizes = [int(n) for n in field_sizes]
        self.num_dense = int(num_dense)
        self.embedding_dim = int(embedding_dim)
        self.init_stddev = float(init_stddev)
        self.initializer = initializer
        self.seed = int(seed)
        self.offsets = field_offsets(self.field_sizes)
        self.column_groups = check_column_groups(column_groups, len(self.field_sizes))

    @property
    def width(self) -> int:
        """Width of the ``flat`` output without the dense values (fields x dim)."""
        return embedded_width(self.column_groups, len(self.field_sizes), self.embedding_dim)

    def build(self, input_shape: Any = None) -> None:
        rows = (sum(self.field_sizes), self.embedding_dim)
        if self.initializer == "zeros":
            self.embeddings = self.add_weight(name="embeddings", shape=rows, initializer="zeros")
        else:
            normal = keras.initializers.RandomNormal(stddev=self.init_stddev, seed=self.seed)
            self.embeddings = self.add_weight(name="embeddings", shape=rows, initializer=normal)
        self.dense_vectors = None
        if self.num_dense:  # no variable without a gradient
            self.dense_vectors = self.add_weight(
                name="dense_vectors",
                shape=(self.num_dense, self.embedding_dim),
                initializer=keras.initializers.RandomNormal(stddev=self.init_stddev, seed=self.seed + 200),
            )

    def call(self, base_ids: Any, dense: Any = None) -> dict[str, Any]:
        return embed_fields(self.embeddings, self.dense_vectors, self.offsets, base_ids, dense, self.column_groups)

    def lookup(self, rows: Any) -> Any:
        """The rows ``rows`` (global row numbers, any shape) of the table."""
        return ops.take(self.embeddings, ops.cast(rows, "int32"), axis=0)

    def row_tables(self) -> list[tuple[Any, str]]:
        """Per-id tables (variable, initial distribution) that a reused vocabulary slot must reset."""
        return [(self.embeddings, self.initializer)]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "field_sizes": self.field_sizes,
            "num_dense": self.num_dense,
            "embedding_dim": self.embedding_dim,
            "init_stddev": self.init_stddev,
            "initializer": self.initializer,
            "seed": self.seed,
            "column_groups": self.column_groups,
        }
