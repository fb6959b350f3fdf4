"""An embedding table without its all-zero rows, looked up exactly as the full one (serving only)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf


def nonzero_rows(table: np.ndarray) -> np.ndarray:
    """Row numbers (ascending, int32) of the rows of ``table`` with at least one non-zero value."""
    return np.flatnonzero(np.any(table != 0, axis=1)).astype(np.int32)


def unprune(rows: np.ndarray, values: np.ndarray, total_rows: int) -> np.ndarray:
    """The full table back from a :class:`PrunedTable`'s variables (the pruned rows zero)."""
    table = np.zeros((total_rows, values.shape[1]), values.dtype)
    kept = rows[rows >= 0]
    table[kept] = values[1 : len(kept) + 1]
    return table


@keras.saving.register_keras_serializable(package="trainer")
class PrunedTable(keras.layers.Layer):
    """Holds the kept rows of a table (``rows``: their numbers, ascending) and their values after a zero
    row (``values`` ``[kept + 1, dim]``). :meth:`lookup` of a kept row gives its values, of any other
    row the zero row: what the full table gives for a row that is exactly zero, so a model served
    through it scores exactly as through the full table.

    Built from a snapshot of the full table (``table``); the values are copied, not recomputed.
    """

    def __init__(self, rows: int, dim: int, kept: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.total_rows = int(rows)
        self.dim = int(dim)
        self.kept = int(kept)
        # An empty table still needs one key for the search: -1, which no row number equals.
        keys = max(self.kept, 1)
        self.rows = self.add_weight(name="rows", shape=(keys,), dtype="int32", initializer="zeros", trainable=False)
        self.values = self.add_weight(
            name="values", shape=(self.kept + 1, self.dim), initializer="zeros", trainable=False
        )
        self.built = True  # its variables exist from the start

    @classmethod
    def from_table(cls, table: np.ndarray, **kwargs: Any) -> PrunedTable:
        kept = nonzero_rows(table)
        layer = cls(table.shape[0], table.shape[1], len(kept), **kwargs)
        layer.rows.assign(kept if len(kept) else np.array([-1], np.int32))
        layer.values.assign(np.concatenate([np.zeros((1, table.shape[1]), table.dtype), table[kept]]))
        return layer

    def lookup(self, rows: Any) -> Any:
        """The values of global rows ``rows`` (any shape)."""
        rows = tf.cast(rows, tf.int32)
        flat = tf.reshape(rows, [-1])
        keys = tf.convert_to_tensor(self.rows)
        at = tf.minimum(tf.searchsorted(keys, flat, side="left", out_type=tf.int32), tf.shape(keys)[0] - 1)
        compact = tf.where(tf.equal(tf.gather(keys, at), flat), at + 1, tf.zeros_like(at))
        values = tf.gather(tf.convert_to_tensor(self.values), compact)
        return tf.reshape(values, tf.concat([tf.shape(rows), [self.dim]], axis=0))

    def nbytes(self) -> int:
        """Bytes of its two variables (the full table: ``rows * dim * 4``)."""
        return (self.kept + 1) * self.dim * 4 + max(self.kept, 1) * 4

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rows": self.total_rows, "dim": self.dim, "kept": self.kept}
