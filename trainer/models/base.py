"""What every model shares: the two optimizers, the one train step, row resets, the serving hooks.

A model (:class:`TrainableModel` subclass) builds its layers and returns from ``call`` a dict with
``logit`` (the served prediction's logit), ``dp_logit`` / ``rn_logit`` when built with ``aux_heads``
(the ES-DFM loss), and ``l2`` (the batch's embedding penalty) when training. It names the layers
whose variables FTRL trains (:meth:`ftrl_layers`; Adam trains the rest), its per-id tables
(:meth:`row_tables`), its global bias (:meth:`bias_variable`) and any loss terms of its own
(:meth:`model_losses`: the dual DNN's teacher and transfer terms, the two tower's cascade
distillation). :meth:`train_step` does the rest, the same for every model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainer import optim
from trainer.features import FeatureSpec
from trainer.losses.base import DelayedFeedbackLoss, cross_entropy


def transform_dense(dense: Any) -> Any:
    """sign(x) * log(1 + |x|): keeps counts and rates on one scale (part of the model, so served too)."""
    return keras.ops.sign(dense) * keras.ops.log1p(keras.ops.abs(dense))


def make_aux_heads(seed: int, bias_init: list[float]) -> tuple[keras.layers.Dense, keras.layers.Dense]:
    """ES-DFM's f_dp and f_rn heads, started at the stream's average rates (their logits move slowly
    under Adam; a zero rn logit would mean f_rn = 0: every negative ignored)."""
    return (
        keras.layers.Dense(
            1,
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 3001),
            bias_initializer=keras.initializers.Constant(bias_init[0]),
            name="dp_head",
        ),
        keras.layers.Dense(
            1,
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 3002),
            bias_initializer=keras.initializers.Constant(bias_init[1]),
            name="rn_head",
        ),
    )


class ServingPart(keras.layers.Layer):
    """``fn`` as a layer over some of a model's layers (``parts``): an export through it holds their
    variables only (the dual DNN's student without its teacher, the two tower's pruned table)."""

    def __init__(self, fn: Any, parts: list[Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.fn = fn
        self.parts = list(parts)

    def build(self, input_shape: Any = None) -> None:
        for part in self.parts:  # built already, or holding no weights to build (lookups)
            part.built = True
        self.built = True

    def call(self, features: Any) -> Any:
        return self.fn(features)


@dataclass
class Endpoint:
    """A serving signature besides ``serving_default``: ``fn`` traced with ``input_signature``; what
    it uses must be held by layers of the default signature's model (a :class:`ServingPart`'s parts)."""

    name: str
    fn: Any
    input_signature: list[Any]


@dataclass
class Served:
    """What an export serves: ``logit(features)`` for ``serving_default`` (features: the lookup's
    ``{"ids", "dense"}``), further signatures (``endpoints(probability)``: ``probability`` turns a
    logit into the served probability), and facts for the export's ``trainer.json``."""

    logit: Any
    endpoints: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


class TrainableModel(keras.Model):
    """Base of the trainer's models (not registered itself: only concrete models are serialised)."""

    spec: FeatureSpec
    dropout: float = 0.0
    init_stddev: float = 0.01
    seed: int = 0

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.loss_fn: DelayedFeedbackLoss | None = None
        self.distill_weight = 0.0
        self.embedding_l2 = 0.0

    # -- what a model defines ----------------------------------------------------------------------

    def ftrl_layers(self) -> list[Any]:
        """Layers whose trainable variables FTRL updates (Adam updates every other one)."""
        raise NotImplementedError

    def row_tables(self) -> list[tuple[Any, str]]:
        """Per-id tables (variable, ``normal`` or ``zeros``) of the base fields' stacked rows."""
        raise NotImplementedError

    @property
    def bias_variable(self) -> Any:
        """The scalar added to the served logit (what a bias refit shifts)."""
        raise NotImplementedError

    def model_losses(self, targets: dict[str, Any], outputs: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """The model's own loss terms: name -> (value, weight); added to the total as weight x value."""
        return {}

    def served(self, vocabs: Any) -> Served:
        """The serving function(s) of an export (``vocabs``: the vocabulary snapshot exported)."""
        return Served(logit=lambda features: self(features)["logit"])

    def exported_variables(self, saved: dict[str, Any]) -> dict[str, Any]:
        """An export's variables by path, as this model's variables (a pruned table made whole again)."""
        return saved

    def dummy_inputs(self) -> dict[str, np.ndarray]:
        """A one-row batch of the feature layout ``self.spec`` (ids 0: the OOV slots)."""
        spec = self.spec
        return {
            "ids": np.zeros((1, len(spec.base_fields) + len(spec.crosses)), np.int32),
            "dense": np.zeros((1, len(spec.dense)), np.float32),
        }

    def build_from_spec(self) -> TrainableModel:
        """Create the variables by running a one-row batch (ids 0: the OOV slots)."""
        self(self.dummy_inputs())
        return self

    @property
    def _default_save_signature(self) -> None:
        # The serving signature is the export's (trainer.export); do not trace a default one.
        return None

    # -- training ----------------------------------------------------------------------------------

    @property
    def wide_variables(self) -> list[Any]:
        """FTRL's: the FTRL layers' variables and the auxiliary heads' biases. A cold stream starts the
        heads at fixed logits far from their rates; under Adam a bias moves a few thousandths a step (a
        day of stream would not reach the rate), under FTRL's per-coordinate rate as the main bias does."""
        heads = [self.dp_head.bias, self.rn_head.bias] if getattr(self, "aux_heads", False) else []
        return [v for layer in self.ftrl_layers() for v in layer.trainable_variables] + heads

    @property
    def deep_variables(self) -> list[Any]:
        wide = {id(v) for v in self.wide_variables}
        return [v for v in self.trainable_variables if id(v) not in wide]

    def compile_training(
        self,
        loss: DelayedFeedbackLoss,
        wide_optimizer: keras.optimizers.Ftrl,
        deep_optimizer: keras.optimizers.Optimizer,
        distill_weight: float = 0.0,
        embedding_l2: float = 0.0,
    ) -> None:
        """Attach the loss and the two optimizers (built here, so train_step can be a tf.function)."""
        if loss.aux_heads and not getattr(self, "aux_heads", False):
            raise ValueError(f"loss {loss.name!r} needs a model built with aux_heads=True")
        if not self.built:
            self.build_from_spec()
        self.loss_fn = loss
        self.wide_optimizer = wide_optimizer
        self.deep_optimizer = deep_optimizer
        self.distill_weight = float(distill_weight)
        self.embedding_l2 = float(embedding_l2)
        wide_optimizer.build(self.wide_variables)
        deep_optimizer.build(self.deep_variables)
        optim.sync_ftrl(wide_optimizer, self.wide_variables)

    def train_step(self, data: Any) -> dict[str, Any]:
        """One step on ``(inputs, targets)``; targets: ``label``, ``attribution``, ``late_weight``,
        ``step_scale`` and, when distilling, ``teacher`` (the reference model's probability). FTRL updates
        the FTRL layers' variables and Adam the others from the same gradient computation.

        Besides the losses it returns ``logit``: the batch's inference-mode logits before the update
        (progressive validation). Without dropout they are the training forward pass's own."""
        inputs, targets = data
        assert self.loss_fn is not None, "call compile_training() first"
        wide_vars, deep_vars = self.wide_variables, self.deep_variables
        scored = self(inputs, training=False)["logit"] if self.dropout else None
        with tf.GradientTape() as tape:
            outputs = self(inputs, training=True)
            parts = self.loss_fn(targets, outputs)
            total = parts["loss"]
            if self.distill_weight > 0.0:
                distill = tf.reduce_mean(cross_entropy(tf.cast(targets["teacher"], tf.float32), outputs["logit"]))
                parts["distill_loss"] = distill
                total = total + self.distill_weight * distill
            for name, (value, weight) in self.model_losses(targets, outputs).items():
                parts[name] = value
                total = total + weight * value
            if self.embedding_l2 > 0.0:
                total = total + self.embedding_l2 * outputs["l2"]
            if "step_scale" in targets:  # a short batch takes a proportionally short step
                total = total * targets["step_scale"]
        gradients = tape.gradient(total, wide_vars + deep_vars)
        self.wide_optimizer.apply(gradients[: len(wide_vars)], wide_vars)
        self.deep_optimizer.apply(gradients[len(wide_vars) :], deep_vars)
        logit = outputs["logit"] if scored is None else scored
        return {
            **parts,
            "total_loss": total,
            "mean_probability": tf.reduce_mean(tf.sigmoid(outputs["logit"])),
            "logit": tf.stop_gradient(logit),
        }

    def reset_rows(self, rows: np.ndarray, step: int) -> None:
        """Re-initialise base-table rows (reused vocabulary slots) in every per-id table and its
        optimizer slots; the fresh values are a deterministic function of (seed, step)."""
        if len(rows) == 0:
            return
        wide = {id(v) for v in self.wide_variables}
        for index, (variable, init) in enumerate(self.row_tables()):
            optimizer = self.wide_optimizer if id(variable) in wide else self.deep_optimizer
            shape = (len(rows), variable.shape[1])
            if init == "zeros":
                values = tf.zeros(shape, variable.dtype)
            else:
                seed = tf.constant([self.seed + 7919 * index, step], tf.int32)
                values = self.init_stddev * tf.random.stateless_normal(shape, seed, dtype=variable.dtype)
            optim.reset_rows(optimizer, variable, rows, values)

    def shift_bias(self, shift: float) -> None:
        """Add ``shift`` to the global bias (FTRL's fixed point moved with it when FTRL trains it)."""
        bias = self.bias_variable
        bias.assign(bias.numpy() + shift)
        if any(v is bias for v in self.wide_variables):
            optim.sync_ftrl(self.wide_optimizer, [bias])
