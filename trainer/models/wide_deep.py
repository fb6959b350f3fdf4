"""Wide & Deep in the iQIYI variant: each part feeds an FM layer before the fusion (docs/trainer.md).

    logit = wide.linear + FM(wide factors) + FM(deep vectors) + MLP(deep embeddings, dense)

The wide variables (bias, id/cross/dense weights, wide FM factors) are trained with FTRL, the deep
ones (embeddings, dense vectors, MLP, auxiliary heads) with Adam, both in one :meth:`train_step`,
which the offline fit and the streaming sidecar share.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainer import optim
from trainer.features import FeatureSpec
from trainer.layers import DeepLayer, FactorizationMachine, WideLayer
from trainer.losses import DelayedFeedbackLoss
from trainer.losses.base import cross_entropy


def transform_dense(dense: Any) -> Any:
    """sign(x) * log(1 + |x|): keeps counts and rates on one scale (part of the model, so served too)."""
    return keras.ops.sign(dense) * keras.ops.log1p(keras.ops.abs(dense))


@keras.saving.register_keras_serializable(package="trainer")
class WideDeepModel(keras.Model):
    """Inputs ``{"ids": int [batch, fields], "dense": float [batch, dense]}`` (see :mod:`trainer.features`).

    Outputs ``{"logit": [batch]}``, plus ``dp_logit`` and ``rn_logit`` with ``aux_heads`` (ES-DFM)
    and ``l2`` (the batch's embedding penalty) when training.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        embedding_dim: int = 8,
        wide_factor_dim: int = 4,
        hidden_units: tuple[int, ...] | list[int] = (64, 32),
        init_stddev: float = 0.01,
        dropout: float = 0.0,
        bias_init: float = 0.0,
        aux_heads: bool = False,
        aux_bias_init: tuple[float, float] | list[float] = (-4.0, 4.0),
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.spec_json = spec
        self.spec = FeatureSpec.from_json(spec)
        self.embedding_dim = int(embedding_dim)
        self.wide_factor_dim = int(wide_factor_dim)
        self.hidden_units = [int(n) for n in hidden_units]
        self.init_stddev = float(init_stddev)
        self.dropout = float(dropout)
        self.bias_init = float(bias_init)
        self.aux_heads = bool(aux_heads)
        self.aux_bias_init = [float(x) for x in aux_bias_init]
        self.seed = int(seed)
        self._n_base = len(self.spec.base_fields)
        num_dense = len(self.spec.dense)
        self.wide = WideLayer(
            self.spec.base_sizes,
            self.spec.cross_sizes,
            num_dense,
            wide_factor_dim,
            init_stddev,
            bias_init,
            seed=seed + 1000,
            name="wide",
        )
        self.deep = DeepLayer(
            self.spec.base_sizes,
            num_dense,
            embedding_dim,
            self.hidden_units,
            init_stddev,
            dropout,
            seed=seed + 2000,
            name="deep",
        )
        self.wide_fm = FactorizationMachine(name="wide_fm")
        self.deep_fm = FactorizationMachine(name="deep_fm")
        if self.aux_heads:
            # ES-DFM's f_dp and f_rn heads, started at the stream's average rates (their logits move
            # slowly under Adam; a zero rn logit would mean f_rn = 0: every negative ignored).
            self.dp_head = keras.layers.Dense(
                1,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 3001),
                bias_initializer=keras.initializers.Constant(self.aux_bias_init[0]),
                name="dp_head",
            )
            self.rn_head = keras.layers.Dense(
                1,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 3002),
                bias_initializer=keras.initializers.Constant(self.aux_bias_init[1]),
                name="rn_head",
            )
        self.loss_fn: DelayedFeedbackLoss | None = None
        self.distill_weight = 0.0
        self.embedding_l2 = 0.0

    def build(self, input_shape: Any = None) -> None:
        self.wide.build()
        self.deep.build()
        if self.aux_heads:
            self.dp_head.build((None, self.hidden_units[-1]))
            self.rn_head.build((None, self.hidden_units[-1]))
        self.built = True

    def build_from_spec(self) -> WideDeepModel:
        """Create the variables by running a one-row batch (ids 0: the OOV slots)."""
        self(self.dummy_inputs())
        return self

    def dummy_inputs(self) -> dict[str, np.ndarray]:
        return {
            "ids": np.zeros((1, self._n_base + len(self.spec.crosses)), np.int32),
            "dense": np.zeros((1, len(self.spec.dense)), np.float32),
        }

    def call(self, inputs: dict[str, Any], training: bool = False) -> dict[str, Any]:
        ids = keras.ops.cast(inputs["ids"], "int32")
        base_ids, cross_ids = ids[:, : self._n_base], ids[:, self._n_base :]
        dense = transform_dense(keras.ops.cast(inputs["dense"], "float32"))
        wide = self.wide(base_ids, cross_ids, dense)
        deep = self.deep(base_ids, dense, training=training)
        logit = wide["linear"] + self.wide_fm(wide["factors"]) + self.deep_fm(deep["vectors"]) + deep["output"]
        outputs = {"logit": logit}
        if self.aux_heads:
            # The heads read the main model's representation without training it (as ES-DFM's
            # separate models would not): the importance weights must not bend what they weight.
            hidden = keras.ops.stop_gradient(deep["hidden"])
            outputs["dp_logit"] = self.dp_head(hidden)[:, 0]
            outputs["rn_logit"] = self.rn_head(hidden)[:, 0]
        if training:
            outputs["l2"] = deep["l2"]
        return outputs

    @property
    def _default_save_signature(self) -> None:
        # The serving signature is the export's (trainer.export); do not trace a default one.
        return None

    # -- training ----------------------------------------------------------------------------------

    @property
    def wide_variables(self) -> list[Any]:
        return list(self.wide.trainable_variables)

    @property
    def deep_variables(self) -> list[Any]:
        wide = {id(v) for v in self.wide.trainable_variables}
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
        if loss.aux_heads and not self.aux_heads:
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
        ``step_scale`` and, when distilling, ``teacher`` (the reference model's probability). FTRL updates the wide
        variables and Adam the deep ones from the same gradient computation.

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
        tables = [(self.wide, self.wide_optimizer, t) for t in self.wide.row_tables()]
        tables += [(self.deep, self.deep_optimizer, t) for t in self.deep.row_tables()]
        for index, (_, optimizer, (variable, init)) in enumerate(tables):
            shape = (len(rows), variable.shape[1])
            if init == "zeros":
                values = tf.zeros(shape, variable.dtype)
            else:
                seed = tf.constant([self.seed + 7919 * index, step], tf.int32)
                values = self.init_stddev * tf.random.stateless_normal(shape, seed, dtype=variable.dtype)
            optim.reset_rows(optimizer, variable, rows, values)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "spec": self.spec_json,
            "embedding_dim": self.embedding_dim,
            "wide_factor_dim": self.wide_factor_dim,
            "hidden_units": self.hidden_units,
            "init_stddev": self.init_stddev,
            "dropout": self.dropout,
            "bias_init": self.bias_init,
            "aux_heads": self.aux_heads,
            "aux_bias_init": self.aux_bias_init,
            "seed": self.seed,
        }
