"""Hashing IDs into embedding rows, once or K times, and how often IDs collide (docs/trainer.md).

*Single hashing* maps an ID to one bucket of a table (FarmHash fingerprint, :func:`hash_ids`).
*Multi-hash* maps it to one bucket in each of K sub-tables with K independent keyed hashes
(SipHash, ``tf.strings.to_hash_bucket_strong`` with key :func:`hash_keys` of the field's seed and the
sub-table's index, :func:`multi_hash_ids`), and the field's vector combines the K rows: their sum
(:func:`combine_columns`), or the K rows side by side (``concat``: each row its own column of the
model's input). The hashes are TensorFlow ops, in the training path and in the exported graph alike,
so every process and TF Serving compute the same buckets.

A *collision* is an ID whose embedding the model cannot tell apart from another ID's in the same
stream: with single hashing, an ID that shares its bucket with another ID; with multi-hash, an ID
that shares ALL its K buckets with one other ID (sharing some of them still leaves its combined
vector its own). :func:`collision_rate` and :func:`single_hash_collision_rate` measure it over a
stream of IDs, over the distinct IDs or weighted by their impressions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from keras import ops

COMBINES = ("sum", "concat")
MIN_TABLES, MAX_TABLES = 2, 8  # K = 1 is single hashing (features.hashed)
HASH_CHUNK = 1 << 20  # IDs hashed per TensorFlow call when measuring collisions
_MASK63 = (1 << 63) - 1  # SipHash keys are int64 attributes: non-negative 63-bit values


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return x ^ (x >> 31)


def hash_keys(seed: int, table: int) -> list[int]:
    """The SipHash key (two 63-bit words) of sub-table ``table`` of a field hashed with ``seed``.

    A fixed function of its arguments (part of a saved model's layout: changing it re-buckets every
    exported model's IDs); different for every (seed, table), so the K hashes are independent."""
    base = 2 * (int(seed) * MAX_TABLES + int(table))
    return [_splitmix64(base) & _MASK63, _splitmix64(base + 1) & _MASK63]


def hash_ids(values: Any, buckets: int) -> tf.Tensor:
    """Bucket ids of strings (FarmHash fingerprint), the same in Python and in the exported graph."""
    return tf.cast(tf.strings.to_hash_bucket_fast(values, buckets), tf.int32)


def multi_hash_ids(values: Any, tables: Sequence[int], seed: int = 0) -> tf.Tensor:
    """int32 ``[n, K]``: each string's bucket in each of the K sub-tables (rows ``tables[k]``)."""
    columns = [
        tf.strings.to_hash_bucket_strong(values, int(rows), key=hash_keys(seed, k)) for k, rows in enumerate(tables)
    ]
    return tf.cast(tf.stack(columns, axis=-1), tf.int32)


def as_strings(ids: Any) -> tf.Tensor:
    """IDs as the string tensor the hashes read: strings as they are, integers in decimal (as the
    serving graph turns an int64 input into a string)."""
    array = np.asarray(ids)
    if array.dtype.kind in "iu":
        return tf.strings.as_string(tf.constant(array, tf.int64))
    if array.dtype.kind in "SUO":
        return tf.constant(array.astype(str) if array.dtype.kind != "S" else array, tf.string)
    raise TypeError(f"expected string or integer IDs, got an array of {array.dtype}")


# -- the combination of a field's K rows -------------------------------------------------------------


def check_column_groups(column_groups: Sequence[int] | None, columns: int) -> list[int]:
    """``column_groups`` (consecutive id columns summed into one field vector) checked against the
    number of id columns; None: one field per column."""
    if column_groups is None:
        return [1] * columns
    groups = [int(g) for g in column_groups]
    if any(g < 1 for g in groups) or sum(groups) != columns:
        raise ValueError(f"column_groups {groups} must be positive and add up to the {columns} id columns")
    return groups


def combine_columns(embedded: Any, column_groups: Sequence[int]) -> Any:
    """``[batch, columns, dim]`` -> ``[batch, fields, dim]``: each group of consecutive columns summed
    (a multi-hash field combined by ``sum``); a group of one is its column unchanged."""
    if all(g == 1 for g in column_groups):
        return embedded
    parts, start = [], 0
    for size in column_groups:
        part = embedded[:, start : start + size, :]
        parts.append(part if size == 1 else ops.sum(part, axis=1, keepdims=True))
        start += size
    return ops.concatenate(parts, axis=1)


# -- collisions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Collisions:
    """How many of a stream's distinct IDs (and of its impressions) an embedding cannot tell apart."""

    ids: int
    collided_ids: int
    impressions: int
    collided_impressions: int

    @property
    def rate(self) -> float:
        """Share of the distinct IDs that collide."""
        return self.collided_ids / self.ids if self.ids else 0.0

    @property
    def weighted_rate(self) -> float:
        """Share of the impressions whose ID collides."""
        return self.collided_impressions / self.impressions if self.impressions else 0.0

    def to_json(self) -> dict[str, float | int]:
        return {**self.__dict__, "rate": self.rate, "weighted_rate": self.weighted_rate}


def distinct_ids(ids: Any, counts: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(distinct IDs, impressions of each): from a stream with repeats, or ``ids`` already distinct
    with their ``counts``."""
    array = np.asarray(ids)
    if counts is not None:
        weights = np.asarray(counts, np.int64)
        if weights.shape != array.shape or array.ndim != 1:
            raise ValueError(f"expected one count per ID, got {weights.shape} counts for {array.shape} IDs")
        return array, weights
    unique, weights = np.unique(array, return_counts=True)
    return unique, weights.astype(np.int64)


def bucket_collisions(buckets: np.ndarray, counts: np.ndarray, tables: Sequence[int]) -> Collisions:
    """Collisions of distinct IDs whose buckets are the rows of ``buckets`` (``[ids, K]``, column k
    below ``tables[k]``): an ID collides when another row holds exactly its K buckets."""
    buckets = np.asarray(buckets, np.int64).reshape(len(counts), -1)
    if math.prod(int(t) for t in tables) < 2**62:  # one int64 per ID: its buckets in mixed radix
        key = np.zeros(len(buckets), np.int64)
        for k, rows in enumerate(tables):
            key = key * int(rows) + buckets[:, k]
        _, inverse, sizes = np.unique(key, return_inverse=True, return_counts=True)
    else:
        _, inverse, sizes = np.unique(buckets, axis=0, return_inverse=True, return_counts=True)
    collided = sizes[np.ravel(inverse)] > 1
    counts = np.asarray(counts, np.int64)
    return Collisions(
        ids=len(counts),
        collided_ids=int(collided.sum()),
        impressions=int(counts.sum()),
        collided_impressions=int(counts[collided].sum()),
    )


def _hash_in_chunks(ids: np.ndarray, hash_fn: Any) -> np.ndarray:
    chunks = [hash_fn(as_strings(ids[i : i + HASH_CHUNK])).numpy() for i in range(0, len(ids), HASH_CHUNK)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int32)


def multi_hash_collisions(ids: Any, tables: Sequence[int], seed: int = 0, counts: Any = None) -> Collisions:
    """Collisions of a multi-hash field with sub-tables ``tables`` over the IDs ``ids`` (a stream, or
    distinct IDs with their ``counts``), hashed exactly as the model hashes them."""
    check_tables(tables)
    unique, weights = distinct_ids(ids, counts)
    buckets = _hash_in_chunks(unique, lambda s: multi_hash_ids(s, tables, seed)).reshape(len(unique), len(tables))
    return bucket_collisions(buckets, weights, tables)


def single_hash_collisions(ids: Any, buckets: int, counts: Any = None) -> Collisions:
    """Collisions of a single-hashed field of ``buckets`` rows over ``ids`` (as :func:`multi_hash_collisions`)."""
    unique, weights = distinct_ids(ids, counts)
    return bucket_collisions(_hash_in_chunks(unique, lambda s: hash_ids(s, int(buckets))), weights, [int(buckets)])


def collision_rate(
    ids: Any, tables: Sequence[int], seed: int = 0, weighted: bool = False, counts: Any = None
) -> float:
    """Share of the distinct IDs of ``ids`` (``weighted``: of its impressions) that share all their K
    buckets with another ID, for a multi-hash field of sub-tables ``tables``."""
    found = multi_hash_collisions(ids, tables, seed, counts)
    return found.weighted_rate if weighted else found.rate


def single_hash_collision_rate(ids: Any, buckets: int, weighted: bool = False, counts: Any = None) -> float:
    """Share of the distinct IDs of ``ids`` (``weighted``: of its impressions) that share their bucket
    with another ID, for a single-hashed field of ``buckets`` rows."""
    found = single_hash_collisions(ids, buckets, counts)
    return found.weighted_rate if weighted else found.rate


def check_tables(tables: Sequence[int]) -> None:
    if not MIN_TABLES <= len(tables) <= MAX_TABLES or any(int(t) < 1 for t in tables):
        raise ValueError(
            f"expected {MIN_TABLES} to {MAX_TABLES} sub-tables of at least 1 row each, got {list(tables)}"
        )
