"""From samples to model inputs, on two paths that must agree.

*Training* (Python, :class:`FeatureEncoder`): tracked fields go through the dynamic vocabularies
(:mod:`trainer.vocab`), which change as the stream goes by; hashed fields, multi-hash fields and
crosses are hashed once per table. *Serving* (TensorFlow, :class:`FeatureLookup`): tracked fields go
through static lookup tables built from a vocabulary snapshot at export time, so the exported model
needs nothing else. Both hash with :mod:`trainer.layers.multi_hash` and :func:`cross_strings` and
produce the same local ids:

    ids   int32 [batch, tracked + hashed + multi-hash sub-tables + crosses]   (per-column slot or bucket;
                                                                              the model adds offsets)
    dense float32 [batch, dense fields]                                       (raw values; the model
                                                                              transforms them)

A multi-hash field has one id column per sub-table; :attr:`FeatureSpec.column_groups` says which
columns the model sums into one field vector (``combine: sum``) and which stay side by side (``concat``).

Field names: ``user_id``, ``item_id``, ``position``, ``context.KEY``, ``sparse.KEY``, ``dense.KEY``.
The serving signature names them with ``.`` replaced by ``_`` (``context_page``, ``dense_u_ctr_7d``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainer.config import FeaturesConfig
from trainer.errors import TrainerError
from trainer.layers.multi_hash import COMBINES, check_tables, hash_ids, multi_hash_ids
from trainer.layers.wide import field_offsets
from trainer.samples import LATE_POSITIVE, SampleTable, is_dense
from trainer.vocab import DynamicVocab, VocabSet

CROSS_SEPARATOR = "\x1f"
MIN_CAPACITY = 16


def cross_strings(a: Any, b: Any) -> tf.Tensor:
    return tf.strings.join([a, b], separator=CROSS_SEPARATOR)


def signature_name(field: str) -> str:
    """The serving-signature input name of a feature field (a valid tf.function argument name)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", field)
    return name if re.match(r"[A-Za-z]", name) else f"f_{name}"


def signature_dtype(field: str) -> tf.DType:
    if field == "position":
        return tf.int64
    return tf.float32 if is_dense(field) else tf.string


@dataclass(frozen=True)
class MultiHashField:
    """A field hashed into K sub-tables (``tables``: rows of each), combined by ``sum`` or ``concat``;
    ``seed`` picks the K hash keys (:func:`trainer.layers.multi_hash.hash_keys`)."""

    field: str
    tables: tuple[int, ...]
    combine: str = "sum"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise TrainerError(
                f"multi-hash field {self.field!r}: combine must be one of {COMBINES}, got {self.combine!r}"
            )
        try:
            check_tables(self.tables)
        except ValueError as exc:
            raise TrainerError(f"multi-hash field {self.field!r}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "tables": list(self.tables), "combine": self.combine, "seed": self.seed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MultiHashField:
        return cls(str(data["field"]), tuple(int(n) for n in data["tables"]), str(data["combine"]), int(data["seed"]))


@dataclass(frozen=True)
class FeatureSpec:
    """The model's input layout; fixed for a model's life (saved with checkpoints and exports).

    Each categorical field is exactly one of tracked (a dynamic vocabulary), hashed (one table of
    buckets) or multi-hash (K sub-tables). Its id columns, in order: the tracked fields', the hashed
    fields', each multi-hash field's K sub-tables', then the crosses'.
    """

    tracked: tuple[tuple[str, int], ...]  # (field, capacity incl. the OOV slot 0)
    hashed: tuple[tuple[str, int], ...]  # (field, buckets)
    crosses: tuple[tuple[str, str, int], ...]  # (field a, field b, buckets)
    dense: tuple[str, ...]
    multi_hash: tuple[MultiHashField, ...] = ()

    @property
    def categorical(self) -> list[str]:
        """The categorical fields, each once, in signature order."""
        return [f for f, _ in self.tracked] + [f for f, _ in self.hashed] + [m.field for m in self.multi_hash]

    @property
    def base_fields(self) -> list[str]:
        """The field of each base id column (a multi-hash field's name once per sub-table)."""
        return [f for f, _ in self.tracked] + [f for f, _ in self.hashed] + [
            m.field for m in self.multi_hash for _ in m.tables
        ]

    @property
    def base_sizes(self) -> list[int]:
        """Rows of each base id column's table."""
        multi = [n for m in self.multi_hash for n in m.tables]
        return [n for _, n in self.tracked] + [n for _, n in self.hashed] + multi

    @property
    def base_offsets(self) -> list[int]:
        return field_offsets(self.base_sizes)

    @property
    def base_rows(self) -> int:
        return sum(self.base_sizes)

    @property
    def column_groups(self) -> list[int]:
        """Consecutive base id columns that make one field vector: K for a multi-hash field summed,
        1 for every other column (a ``concat`` field's sub-tables stay side by side)."""
        groups = [1] * (len(self.tracked) + len(self.hashed))
        for m in self.multi_hash:
            groups += [len(m.tables)] if m.combine == "sum" else [1] * len(m.tables)
        return groups

    @property
    def cross_sizes(self) -> list[int]:
        return [n for _, _, n in self.crosses]

    @property
    def cross_rows(self) -> int:
        return sum(self.cross_sizes)

    @property
    def fields(self) -> list[str]:
        """Every input field, in signature order."""
        return self.categorical + list(self.dense)

    def signature(self) -> dict[str, tf.TensorSpec]:
        names = [signature_name(f) for f in self.fields]
        if len(set(names)) != len(names):
            raise TrainerError(f"feature fields {self.fields} give clashing serving input names {names}")
        return {
            signature_name(f): tf.TensorSpec([None], signature_dtype(f), name=signature_name(f)) for f in self.fields
        }

    def select(self, fields: Sequence[str]) -> FeatureSpec:
        """The layout of ``fields`` alone (no crosses): what a lookup of only those fields produces."""
        names = set(fields)
        return FeatureSpec(
            tracked=tuple(t for t in self.tracked if t[0] in names),
            hashed=tuple(h for h in self.hashed if h[0] in names),
            crosses=(),
            dense=tuple(f for f in self.dense if f in names),
            multi_hash=tuple(m for m in self.multi_hash if m.field in names),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tracked": [list(x) for x in self.tracked],
            "hashed": [list(x) for x in self.hashed],
            "crosses": [list(x) for x in self.crosses],
            "dense": list(self.dense),
            "multi_hash": [m.to_json() for m in self.multi_hash],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        """A spec saved by :meth:`to_json`; one saved before multi-hash fields existed has none."""
        return cls(
            tracked=tuple((str(f), int(n)) for f, n in data["tracked"]),
            hashed=tuple((str(f), int(n)) for f, n in data["hashed"]),
            crosses=tuple((str(a), str(b), int(n)) for a, b, n in data["crosses"]),
            dense=tuple(str(f) for f in data["dense"]),
            multi_hash=tuple(MultiHashField.from_json(m) for m in data.get("multi_hash", [])),
        )

    @classmethod
    def from_table(cls, table: SampleTable, config: FeaturesConfig) -> FeatureSpec:
        """The layout for the fields found in ``table``, as ``config`` selects and sizes them."""
        fields = table.categorical_fields() + table.dense_fields()
        if config.include is not None:
            fields = [f for f in fields if f in config.include]
        fields = [f for f in fields if f not in config.exclude]
        categorical = [f for f in fields if not is_dense(f)]
        if not categorical:
            raise TrainerError("no categorical feature field is left (check features.include / exclude)")
        tracked = []
        for f in categorical:
            if f in config.hashed or f in config.multi_hash:
                continue
            capacity = config.vocab.capacity
            if capacity is None:
                distinct = len(set(table.column(f).tolist()))
                capacity = min(config.vocab.max_capacity, _next_pow2(max(MIN_CAPACITY, math.ceil(1.25 * distinct) + 1)))
            tracked.append((f, capacity))
        hashed = [(f, config.hash_buckets) for f in categorical if f in config.hashed]
        multi_hash = [
            MultiHashField(f, tuple(m.tables), m.combine, m.seed)
            for f in categorical
            if (m := config.multi_hash.get(f)) is not None
        ]
        present = set(categorical)
        crosses = [(a, b, config.cross_buckets) for a, b in config.crosses if a in present and b in present]
        return cls(
            tuple(tracked), tuple(hashed), tuple(crosses), tuple(f for f in fields if is_dense(f)), tuple(multi_hash)
        )

    def new_vocabs(self, admit_after: int, evict_after: int | None) -> VocabSet:
        return VocabSet({f: DynamicVocab(n, admit_after, evict_after) for f, n in self.tracked})


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


@dataclass
class PreparedTable:
    """The parts of a table's model inputs that do not depend on the vocabulary state."""

    table: SampleTable
    tracked: list[np.ndarray]  # string columns of the tracked fields
    hashed: np.ndarray  # int32 [n, hashed + multi-hash sub-tables + crosses]
    dense: np.ndarray  # float32 [n, dense]
    spec: FeatureSpec  # the layout it was prepared for

    @classmethod
    def join(cls, table: SampleTable, parts: Sequence[tuple[PreparedTable, int, int]]) -> PreparedTable:
        """``table``'s prepared rows, gathered from row ranges ``[start, end)`` of tables prepared
        earlier (with one spec) that hold ``table``'s samples in order."""
        spec = parts[0][0].spec
        tracked = [np.concatenate([p.tracked[i][a:b] for p, a, b in parts]) for i in range(len(spec.tracked))]
        return cls(
            table=table,
            tracked=tracked,
            hashed=np.concatenate([p.hashed[a:b] for p, a, b in parts]),
            dense=np.concatenate([p.dense[a:b] for p, a, b in parts]),
            spec=spec,
        )


@dataclass
class EncodedBatch:
    ids: np.ndarray  # int32 [b, fields]
    dense: np.ndarray  # float32 [b, dense]
    resets: np.ndarray  # int32 global rows of the base tables to re-initialise before this batch

    def inputs(self) -> dict[str, np.ndarray]:
        return {"ids": self.ids, "dense": self.dense}


class FeatureEncoder:
    """The training path: samples -> model inputs, advancing the dynamic vocabularies."""

    def __init__(self, spec: FeatureSpec, vocabs: VocabSet, frozen: Collection[str] = ()):
        self.spec = spec
        self.vocabs = vocabs
        # features.frozen: a frozen field's vocabulary is frozen with its rows (no admission, no
        # eviction); an ID it does not hold reads the OOV row, as in serving
        self.frozen = frozenset(frozen)
        self._tracked_offsets = spec.base_offsets[: len(spec.tracked)]

    def prepare(self, table: SampleTable) -> PreparedTable:
        spec = self.spec
        strings: dict[str, tf.Tensor] = {}  # each hashed or crossed column made a tensor once

        def text(field: str) -> tf.Tensor:
            if field not in strings:
                strings[field] = tf.constant(table.column(field).tolist(), tf.string)
            return strings[field]

        hashed = [hash_ids(text(f), n).numpy() for f, n in spec.hashed]
        for m in spec.multi_hash:
            hashed.extend(multi_hash_ids(text(m.field), m.tables, m.seed).numpy().T)
        for a, b, n in spec.crosses:
            hashed.append(hash_ids(cross_strings(text(a), text(b)), n).numpy())
        n_rows = len(table)
        return PreparedTable(
            table=table,
            tracked=[table.column(f) for f, _ in spec.tracked],
            hashed=np.stack(hashed, axis=1).astype(np.int32) if hashed else np.zeros((n_rows, 0), np.int32),
            dense=(
                np.stack([table.column(f) for f in spec.dense], axis=1).astype(np.float32)
                if spec.dense
                else np.zeros((n_rows, 0), np.float32)
            ),
            spec=spec,
        )

    def encode(self, prepared: PreparedTable, rows: np.ndarray, step: int) -> EncodedBatch:
        """Model inputs for ``rows`` at train step ``step`` (sightings counted, slots admitted/evicted)."""
        columns = []
        resets: list[int] = []
        sightings = prepared.table.attributions[rows] != LATE_POSITIVE  # an impression is one sighting
        for (field, _), column, offset in zip(self.spec.tracked, prepared.tracked, self._tracked_offsets, strict=True):
            if field in self.frozen:
                columns.append(self._slots(field, column[rows]))
                continue
            slots, reused = self.vocabs[field].lookup(column[rows].tolist(), step, sightings)
            columns.append(slots)
            resets.extend(offset + s for s in reused)
        tracked = np.stack(columns, axis=1) if columns else np.zeros((len(rows), 0), np.int32)
        return EncodedBatch(
            ids=np.concatenate([tracked, prepared.hashed[rows]], axis=1).astype(np.int32),
            dense=prepared.dense[rows],
            resets=np.asarray(resets, np.int32),
        )

    def peek(self, prepared: PreparedTable, rows: np.ndarray) -> EncodedBatch:
        """Model inputs without counting sightings (evaluation on the training path)."""
        columns = [self._slots(f, col[rows]) for (f, _), col in zip(self.spec.tracked, prepared.tracked, strict=True)]
        tracked = np.stack(columns, axis=1) if columns else np.zeros((len(rows), 0), np.int32)
        return EncodedBatch(
            ids=np.concatenate([tracked, prepared.hashed[rows]], axis=1).astype(np.int32),
            dense=prepared.dense[rows],
            resets=np.zeros(0, np.int32),
        )

    def _slots(self, field: str, keys: np.ndarray) -> np.ndarray:
        """The slots ``field``'s vocabulary holds for ``keys`` (0, the OOV slot, for the others)."""
        vocab = self.vocabs[field]
        return np.fromiter((vocab.slot(k) for k in keys.tolist()), np.int32, len(keys))


@keras.saving.register_keras_serializable(package="trainer")
class FeatureLookup(keras.layers.Layer):
    """The serving path: raw feature tensors by signature name -> ``{"ids", "dense"}``.

    Tracked fields are looked up in static hash tables holding a vocabulary snapshot (unknown or
    not-admitted IDs -> slot 0, the OOV slot the model was trained with); hashed, multi-hash and
    crossed fields are hashed in the graph with the training path's functions.
    """

    def __init__(self, spec: dict[str, Any], vocabulary: dict[str, list[list[Any]]], **kwargs: Any):
        super().__init__(**kwargs)
        self.spec_json = spec
        self.vocabulary = vocabulary
        self._spec = FeatureSpec.from_json(spec)
        self._tables = []
        for field, _ in self._spec.tracked:
            keys, slots = vocabulary.get(field, [[], []])
            if not keys:  # nothing admitted yet (an early export); TF rejects an empty table
                keys, slots = [""], [0]  # slot 0 is the OOV slot, the default anyway
            initializer = tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys, tf.string), tf.constant(slots, tf.int64), tf.string, tf.int64
            )
            self._tables.append(tf.lookup.StaticHashTable(initializer, default_value=0))

    @classmethod
    def from_vocabs(cls, spec: FeatureSpec, vocabs: VocabSet, **kwargs: Any) -> FeatureLookup:
        vocabulary = {f: [list(x) for x in vocabs[f].items()] for f, _ in spec.tracked}
        return cls(spec.to_json(), vocabulary, **kwargs)

    def _string(self, inputs: dict[str, tf.Tensor], field: str) -> tf.Tensor:
        value = inputs[signature_name(field)]
        return tf.strings.as_string(value) if value.dtype != tf.string else value

    def call(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        spec = self._spec
        columns = [
            tf.cast(table.lookup(self._string(inputs, f)), tf.int32)
            for (f, _), table in zip(spec.tracked, self._tables, strict=True)
        ]
        columns += [hash_ids(self._string(inputs, f), n) for f, n in spec.hashed]
        for m in spec.multi_hash:
            columns += tf.unstack(multi_hash_ids(self._string(inputs, m.field), m.tables, m.seed), axis=1)
        columns += [
            hash_ids(cross_strings(self._string(inputs, a), self._string(inputs, b)), n) for a, b, n in spec.crosses
        ]
        if spec.dense:
            dense = tf.stack([tf.cast(inputs[signature_name(f)], tf.float32) for f in spec.dense], axis=1)
        else:
            dense = tf.zeros([tf.shape(columns[0])[0], 0], tf.float32)
        return {"ids": tf.stack(columns, axis=1), "dense": dense}

    def compute_output_spec(self, inputs: dict[str, Any]) -> dict[str, keras.KerasTensor]:
        batch = next(iter(inputs.values())).shape[0]
        n_ids = len(self._spec.base_fields) + len(self._spec.crosses)
        return {
            "ids": keras.KerasTensor((batch, n_ids), dtype="int32"),
            "dense": keras.KerasTensor((batch, len(self._spec.dense)), dtype="float32"),
        }

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "spec": self.spec_json, "vocabulary": self.vocabulary}


def serving_inputs(
    spec: FeatureSpec, table: SampleTable, rows: np.ndarray | slice = slice(None)
) -> dict[str, np.ndarray]:
    """The serving signature's inputs for samples of ``table`` (what a client would send)."""
    out: dict[str, np.ndarray] = {}
    for field in spec.fields:
        column = table.column(field)[rows]
        if field == "position":
            column = column.astype(np.int64)
        out[signature_name(field)] = column
    return out
