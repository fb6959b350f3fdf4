"""Growable, bounded memory: the model's tables follow the vocabularies' capacities (docs/cli.md).

Under ``features.vocab.memory_budget_mb`` a full vocabulary with nothing idle doubles its capacity
(:mod:`trainer.vocab`) while every tracked field's slots fit the budget. Before the step that uses a
new slot, :meth:`trainer.state.TrainerState.grow` lays the model out again for the new capacities: a
new model and optimizers, built as at start (so the new rows are drawn by the tables' own
initialisers, like every other row, and their optimizer slots start fresh), into which everything of
the old one is copied: each row table's rows to their field's new place, every other variable as it
is, and the optimizers' slots and step counters the same way. The model scores exactly as before
(tested), and a checkpoint or export records the grown layout.

A slot's cost, for the budget, is its rows in every per-ID table (the embeddings, the wide weights
and FM factors) with their optimizer slots (Adam's moments and moving average, FTRL's accumulator and
linear term), plus the vocabulary's own bytes per admitted and pending ID. While a table grows, the old
and the new one are held together for a moment (about three times the old table's bytes).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from common.errors import ConfigError
from trainer.config import TrainerConfig
from trainer.errors import TrainerError
from trainer.features import EncodedBatch, FeatureSpec
from trainer.optim import optimizer_slots
from trainer.vocab import SLOT_BYTES, MemoryBudget, VocabSet

MB = 1 << 20
# The train step's working set per table byte: Keras' Adam and FTRL update a whole table densely every
# step (moments, accumulators), so their temporaries are table-sized. Measured with the soak
# (python -m trainer.bench.vocab_soak): resident memory grew by about this many table-sized copies
# beyond the tables themselves and the vocabularies.
STEP_COPIES = 4


def row_bytes(model: Any) -> int:
    """Bytes of one row across the model's per-ID tables, optimizer slots included."""
    wide = {id(v) for v in model.wide_variables}
    total = 0
    for variable, _ in model.row_tables():
        optimizer = model.wide_optimizer if id(variable) in wide else model.deep_optimizer
        width = int(np.prod(variable.shape[1:])) * np.dtype(variable.dtype).itemsize
        total += width * (1 + len(optimizer_slots(optimizer, variable)))
    return total


def memory_budget(config: TrainerConfig, spec: FeatureSpec, model: Any) -> MemoryBudget | None:
    """The budget of ``features.vocab.memory_budget_mb`` for this model (None when unset); a
    ConfigError when the fields' starting capacities already exceed it."""
    megabytes = config.features.vocab.memory_budget_mb
    if megabytes is None:
        return None
    per_row = row_bytes(model) * (1 + STEP_COPIES)
    budget = MemoryBudget(int(megabytes * MB), {field: per_row for field, _ in spec.tracked})
    start = sum(capacity * budget.slot_bytes(field) for field, capacity in spec.tracked)
    if start > budget.total_bytes:
        raise ConfigError(
            f"features.vocab.memory_budget_mb is {megabytes:g} MB, but the {len(spec.tracked)} tracked fields "
            f"start at {sum(c for _, c in spec.tracked):,} slots of {per_row + SLOT_BYTES:,} bytes and room for "
            f"as many pending IDs ({start / MB:.1f} MB): raise the budget or lower features.vocab.capacity"
        )
    return budget


def grown_spec(spec: FeatureSpec, vocabs: VocabSet) -> FeatureSpec:
    """``spec`` with each tracked field at its vocabulary's capacity."""
    return dataclasses.replace(spec, tracked=tuple((field, vocabs[field].capacity) for field, _ in spec.tracked))


def relocate(batch: EncodedBatch, old: FeatureSpec, new: FeatureSpec) -> EncodedBatch:
    """``batch`` with its resets (global rows of the old layout) moved to the new layout; its ids are
    local to each field and stay as they are."""
    if not batch.resets.size:
        return batch
    old_offsets = np.asarray(old.base_offsets)
    column = np.searchsorted(old_offsets, batch.resets, side="right") - 1
    moved = batch.resets - old_offsets[column] + np.asarray(new.base_offsets)[column]
    return dataclasses.replace(batch, resets=moved.astype(np.int32))


def copy_model(old: Any, new: Any, old_spec: FeatureSpec, new_spec: FeatureSpec) -> None:
    """Every value of ``old`` (laid out for ``old_spec``) into ``new`` (for ``new_spec``), optimizer
    state included; ``new``'s rows beyond the old capacities keep their fresh values."""
    if len(old.variables) != len(new.variables):
        raise TrainerError(f"cannot grow the model: {len(old.variables)} variables, the grown one has "
                           f"{len(new.variables)}")
    tables = {id(v) for v, _ in new.row_tables()}
    for source, target in zip(old.variables, new.variables, strict=True):
        _copy(source, target, id(target) in tables, old_spec, new_spec)
    pairs = (
        (old.wide_optimizer, new.wide_optimizer, old.wide_variables, new.wide_variables),
        (old.deep_optimizer, new.deep_optimizer, old.deep_variables, new.deep_variables),
    )
    for old_optimizer, new_optimizer, old_variables, new_variables in pairs:
        new_optimizer.iterations.assign(old_optimizer.iterations)
        new_optimizer.learning_rate.assign(old_optimizer.learning_rate)
        for source, target in zip(old_variables, new_variables, strict=True):
            slots = zip(optimizer_slots(old_optimizer, source), optimizer_slots(new_optimizer, target), strict=True)
            for (old_slot, _), (new_slot, _) in slots:
                _copy(old_slot, new_slot, id(target) in tables, old_spec, new_spec)


def _copy(source: Any, target: Any, table: bool, old_spec: FeatureSpec, new_spec: FeatureSpec) -> None:
    old_shape, new_shape = tuple(source.shape), tuple(target.shape)
    if old_shape == new_shape:
        target.assign(source.value)
        return
    if not table or old_shape[1:] != new_shape[1:] or (old_shape[0], new_shape[0]) != (
        old_spec.base_rows, new_spec.base_rows
    ):
        raise TrainerError(
            f"cannot grow the model: {source.path} has shape {old_shape}, the grown model's {new_shape} "
            f"(expected per-ID tables of {old_spec.base_rows} -> {new_spec.base_rows} rows only)"
        )
    values, grown = source.numpy(), np.array(target.numpy())
    for start, moved, size in zip(old_spec.base_offsets, new_spec.base_offsets, old_spec.base_sizes, strict=True):
        grown[moved : moved + size] = values[start : start + size]
    target.assign(grown)
