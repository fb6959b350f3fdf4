"""The two optimizers (FTRL for the wide part, Adam for the deep part) and row-level state surgery.

Two things Keras' optimizers do not do on their own:

- FTRL keeps the weights as a function of its ``linear`` slot (``w = (clip(z, l1) - z) / q``), and
  Keras starts that slot at zero, which would wipe any non-zero initial weight (the wide FM factors
  would all collapse to 0 on the first step). :func:`sync_ftrl` sets ``linear`` so that the current
  weights are FTRL's fixed point.
- A vocabulary slot handed to a new ID must start afresh: :func:`reset_rows` re-initialises the rows
  of a variable *and* of its optimizer slots (Adam moments; FTRL accumulator and linear term).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainer.config import OptimizerConfig


def make_optimizers(config: OptimizerConfig) -> tuple[keras.optimizers.Ftrl, keras.optimizers.Adam]:
    wide = keras.optimizers.Ftrl(
        learning_rate=config.ftrl_learning_rate,
        initial_accumulator_value=config.ftrl_initial_accumulator,
        l1_regularization_strength=config.ftrl_l1,
        l2_regularization_strength=config.ftrl_l2,
        name="wide_ftrl",
    )
    ema = {"use_ema": config.adam_ema_momentum is not None, "ema_momentum": config.adam_ema_momentum or 0.99}
    deep: keras.optimizers.Adam
    if config.adam_weight_decay > 0:
        deep = keras.optimizers.AdamW(
            learning_rate=config.adam_learning_rate, weight_decay=config.adam_weight_decay, name="deep_adam", **ema
        )
    else:
        deep = keras.optimizers.Adam(learning_rate=config.adam_learning_rate, name="deep_adam", **ema)
    return wide, deep


def _ftrl_linear(optimizer: keras.optimizers.Ftrl, values: tf.Tensor) -> tf.Tensor:
    """The ``linear`` slot value whose FTRL weight is ``values`` (at the initial accumulator)."""
    lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    accumulator = optimizer.initial_accumulator_value
    l2 = optimizer.l2_regularization_strength + optimizer.beta / (2.0 * lr)
    quadratic = accumulator ** (-optimizer.learning_rate_power) / lr + 2.0 * l2
    l1 = optimizer.l1_regularization_strength
    return -(values * quadratic + tf.sign(values) * l1)


def optimizer_slots(optimizer: Any, variable: Any) -> list[tuple[Any, str]]:
    """(slot variable, how to re-initialise it) for ``variable`` under ``optimizer``."""
    index = optimizer._get_variable_index(variable)
    slots: list[tuple[Any, str]]
    if isinstance(optimizer, keras.optimizers.Ftrl):
        slots = [(optimizer._accumulators[index], "accumulator"), (optimizer._linears[index], "linear")]
    elif isinstance(optimizer, keras.optimizers.Adam):
        slots = [(optimizer._momentums[index], "zeros"), (optimizer._velocities[index], "zeros")]
        if optimizer.amsgrad:
            slots.append((optimizer._velocity_hats[index], "zeros"))
    else:
        raise TypeError(f"no row reset for optimizer {type(optimizer).__name__}")
    if optimizer.use_ema:
        slots.append((optimizer._model_variables_moving_average[index], "value"))
    return slots


def sync_ftrl(optimizer: keras.optimizers.Ftrl, variables: Sequence[Any]) -> None:
    """Make the current values of ``variables`` FTRL's fixed point (call after build or restore)."""
    for variable in variables:
        for slot, kind in optimizer_slots(optimizer, variable):
            if kind == "linear":
                slot.assign(_ftrl_linear(optimizer, tf.convert_to_tensor(variable.value)))


def sync_average(optimizer: Any, variables: Sequence[Any]) -> None:
    """Start the optimizer's moving average of ``variables`` (``use_ema``) at their current values (call
    after setting weights from outside the optimizer: built with the model, the average still holds its
    initialisation, which the end of a shuffled fit would otherwise swap back in)."""
    if not optimizer.use_ema:
        return
    for variable in variables:
        for slot, kind in optimizer_slots(optimizer, variable):
            if kind == "value":
                slot.assign(variable.value)


def reset_rows(optimizer: Any, variable: Any, rows: np.ndarray, values: tf.Tensor) -> None:
    """Set ``variable[rows] = values`` and re-initialise the same rows of its optimizer slots."""
    rows_t = tf.convert_to_tensor(rows, tf.int32)
    values = tf.cast(values, variable.dtype)
    variable.value.scatter_update(tf.IndexedSlices(values, rows_t))
    for slot, kind in optimizer_slots(optimizer, variable):
        if kind == "zeros":
            fresh = tf.zeros_like(values)
        elif kind == "value":
            fresh = values
        elif kind == "accumulator":
            fresh = tf.fill(tf.shape(values), tf.cast(optimizer.initial_accumulator_value, values.dtype))
        else:
            fresh = _ftrl_linear(optimizer, values)
        slot.value.scatter_update(tf.IndexedSlices(fresh, rows_t))


class FrozenRows:
    """Rows of variables held at fixed values while the rest trains (``features.frozen``).

    :meth:`restore` writes the rows back from a snapshot after each optimizer step (inside the compiled
    train step): the rows stay bit for bit what :meth:`take` read, whatever the optimizers compute for
    them (FTRL re-derives its weights from its slots, AdamW decays every weight, the EMA average drifts).
    """

    def __init__(self, tables: Sequence[tuple[Any, np.ndarray]]):
        self.tables = [
            (
                variable,
                tf.constant(rows, tf.int32),
                tf.Variable(tf.zeros((len(rows), *variable.shape[1:]), variable.dtype), trainable=False),
            )
            for variable, rows in tables
            if len(rows)
        ]
        self.taken = False

    @property
    def rows(self) -> int:
        """Rows held, over every table."""
        return sum(int(rows.shape[0]) for _, rows, _ in self.tables)

    def take(self) -> None:
        """Snapshot the rows' current values (what :meth:`restore` writes back)."""
        for variable, rows, snapshot in self.tables:
            snapshot.assign(tf.gather(variable.value, rows))
        self.taken = True

    def restore(self) -> None:
        """Write the snapshot back into the rows (eager, or traced into a train step)."""
        for variable, rows, snapshot in self.tables:
            variable.value.scatter_update(tf.IndexedSlices(snapshot, rows))
