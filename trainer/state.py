"""Everything a training run carries, in one object shared by `fit` and (later) the sidecar.

A :class:`TrainerState` holds the config, the feature spec, the dynamic vocabularies, the model with
its two optimizers, and the step counter. It encodes samples (:mod:`trainer.features`), runs the one
compiled train step, saves/restores ``tf.train`` checkpoints (vocabularies included, through a
Python-state dependency); :mod:`trainer.export` exports it and :mod:`trainer.warm_start` builds one
from an earlier checkpoint or export.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from common.output import write_atomic
from trainer import growth
from trainer.config import TrainerConfig
from trainer.errors import ModelDirError, TrainerError
from trainer.features import EncodedBatch, FeatureEncoder, FeatureSpec, PreparedTable
from trainer.layers.wide import WideLayer, field_offsets
from trainer.losses.base import cross_entropy
from trainer.losses.pending import PendingClicks
from trainer.losses.registry import get_loss
from trainer.models import build_model
from trainer.optim import FrozenRows, make_optimizers
from trainer.samples import LATE_POSITIVE, TIME_FIELDS, SampleTable
from trainer.vocab import VocabSet, vocab_state

log = logging.getLogger("trainer")

META_FILE = "trainer.json"
META_FORMAT = 1


def _logit(rate: float) -> float:
    rate = min(max(rate, 1e-4), 1 - 1e-4)
    return math.log(rate / (1.0 - rate))


def initial_biases(table: SampleTable) -> dict[str, Any]:
    """Starting biases from the stream's rates: the positive rate per impression (a LATE_POSITIVE's
    NEGATIVE not counted twice), and the rates ES-DFM's dp and rn heads learn."""
    late = int(np.sum((table.attributions == LATE_POSITIVE) & (table.labels > 0.5)))
    negatives = int(np.sum(table.labels < 0.5))
    impressions = max(1, len(table) - late)
    return {
        "bias_init": _logit(float(np.sum(table.labels)) / impressions),
        "aux_bias_init": (_logit(late / max(1, len(table))), _logit(negatives / max(1, negatives + late))),
    }


class TrainerState:
    def __init__(
        self,
        config: TrainerConfig,
        spec: FeatureSpec,
        vocabs: VocabSet | None = None,
        bias_init: float = 0.0,
        aux_bias_init: tuple[float, float] = (-4.0, 4.0),
    ):
        self.config = config
        self.loss = get_loss(config.loss.name, config.loss.params())
        self._lay_out(spec, bias_init, aux_bias_init)
        vocab_cfg = config.features.vocab
        self.encoder = FeatureEncoder(
            spec, vocabs or spec.new_vocabs(vocab_cfg.admit_after, vocab_cfg.evict_after_steps),
            config.features.frozen,
        )
        self.vocabs.set_budget(growth.memory_budget(config, spec, self.model))
        self.loaded_from: str | None = None  # where the weights were last loaded from (None: initialised)
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self._step = 0  # step_var's value, read without an eager op (several a batch otherwise)
        loss = config.loss
        self.pending = PendingClicks(
            loss.attribution_horizon_ms, loss.pending_max_weight, loss.delay_tail, loss.delay_learn_from_stream
        )

    def _lay_out(
        self, spec: FeatureSpec, bias_init: float = 0.0, aux_bias_init: tuple[float, float] = (-4.0, 4.0)
    ) -> None:
        """The model, its optimizers, frozen rows and compiled functions for the layout ``spec`` (at
        start, and again when a vocabulary grows: :meth:`grow`)."""
        self.spec = spec
        m = self.config.model
        self.model = build_model(
            m, spec, aux_heads=self.loss.aux_heads, bias_init=bias_init, aux_bias_init=aux_bias_init,
            seed=self.config.fit.seed,
        )
        wide_optimizer, deep_optimizer = make_optimizers(self.config.optimizer)
        self.model.compile_training(
            self.loss, wide_optimizer, deep_optimizer, self.config.loss.distill_weight, m.embedding_l2
        )
        self.frozen = FrozenRows(frozen_tables(self.model, spec, self.config.features.frozen))
        n_ids = len(spec.base_fields) + len(spec.crosses)
        signature = (
            (
                {
                    "ids": tf.TensorSpec([None, n_ids], tf.int32),
                    "dense": tf.TensorSpec([None, len(spec.dense)], tf.float32),
                },
                {
                    "label": tf.TensorSpec([None], tf.float32),
                    "attribution": tf.TensorSpec([None], tf.int32),
                    "teacher": tf.TensorSpec([None], tf.float32),
                    "late_weight": tf.TensorSpec([None], tf.float32),
                    "step_scale": tf.TensorSpec([], tf.float32),
                    "pending_on_negatives": tf.TensorSpec([], tf.float32),
                },
            ),
        )

        def train_step(data: Any) -> dict[str, Any]:
            result = self.model.train_step(data)
            self.frozen.restore()  # features.frozen: the one train step of fit and the sidecar holds them
            return result

        self._train_step = tf.function(train_step, input_signature=signature)
        self._logits = tf.function(lambda inputs: self.model(inputs)["logit"], input_signature=signature[0][:1])

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def create(cls, config: TrainerConfig, table: SampleTable) -> TrainerState:
        """A fresh state whose features are laid out for the fields found in ``table``."""
        return cls(config, FeatureSpec.from_table(table, config.features), **initial_biases(table))

    # -- training ----------------------------------------------------------------------------------

    @property
    def step(self) -> int:
        return self._step

    def set_step(self, step: int) -> None:
        self._step = int(step)
        self.step_var.assign(self._step)

    @property
    def vocabs(self) -> VocabSet:
        return self.encoder.vocabs

    def prepare(self, table: SampleTable) -> PreparedTable:
        return self.encoder.prepare(table)

    def encode(self, prepared: PreparedTable, rows: np.ndarray) -> EncodedBatch:
        batch = self.encoder.encode(prepared, rows, self.step)
        if self.vocabs.budget is not None and self.vocabs.capacities() != dict(self.spec.tracked):
            batch = self.grow(batch)
        return batch

    def grow(self, batch: EncodedBatch) -> EncodedBatch:
        """Lay the model out again for the vocabularies' grown capacities (:mod:`trainer.growth`:
        every value and optimizer slot kept, the new rows initialised like the others, the frozen
        rows held where they moved); ``batch``'s row resets moved to the new layout."""
        old_model, old_spec, held = self.model, self.spec, self.frozen.taken
        self._lay_out(growth.grown_spec(old_spec, self.vocabs))
        growth.copy_model(old_model, self.model, old_spec, self.spec)
        if held:
            self.frozen.take()  # the values copied are the held ones
        self.encoder = FeatureEncoder(self.spec, self.vocabs, self.config.features.frozen)
        budget = self.vocabs.budget
        log.info(
            "vocabularies grew to %s slots (%.1f of the budget's %.1f MB)", dict(self.spec.tracked),
            (self.vocabs.held_bytes() or 0) / growth.MB, (budget.total_bytes if budget else 0) / growth.MB,
        )
        return growth.relocate(batch, old_spec, self.spec)

    def train_on_batch(self, batch: EncodedBatch, targets: dict[str, np.ndarray]) -> dict[str, float]:
        """Re-initialise reused vocabulary slots, then run the train step; returns its metrics.

        ``targets``: ``label``, ``attribution``, ``teacher`` and, to feed the estimate of the clicks
        still to come, the samples' ``impression_time_ms``, ``emit_time_ms`` and ``delay_ms`` (-1 where
        missing; without them every sample weighs 1) and, where read from several, each one's input
        ``partition``.
        """
        return self.train_and_score(batch, targets)[0]

    def train_and_score(
        self, batch: EncodedBatch, targets: dict[str, np.ndarray]
    ) -> tuple[dict[str, float], np.ndarray]:
        """:meth:`train_on_batch`, and the batch's logits before the update (what :meth:`logits` gave
        just before): progressive scoring from the step's own forward pass, not a second one."""
        if not self.frozen.taken:
            self._take_frozen()
        if batch.resets.size:
            self.model.reset_rows(batch.resets, self.step)
        step_targets: dict[str, Any] = {key: targets[key] for key in ("label", "attribution", "teacher")}
        step_targets["late_weight"] = self.late_weights(targets)
        step_targets["pending_on_negatives"] = np.float32(self.pending_on_negatives())
        # The loss is a batch mean: a batch shorter than the configured size (the end of a file, a
        # quiet moment of the stream) would otherwise take a full-size step on a handful of samples.
        step_scale = min(1.0, len(targets["label"]) / self.config.fit.batch_size)
        step_targets["step_scale"] = np.float32(step_scale)
        result = self._train_step((batch.inputs(), step_targets))
        self.step_var.assign_add(1)
        self._step += 1
        logits = result.pop("logit").numpy()
        return {k: float(v) for k, v in result.items()}, logits

    def set_order(self, order: str) -> None:
        """``stream`` (the default, as the sidecar trains; ``fit --order stream``): LATE_POSITIVEs are
        weighted by the delay model; ``shuffle`` (offline epochs, a NEGATIVE and its LATE_POSITIVE in
        one batch): every weight is 1."""
        self.pending.set_stream(order == "stream")

    def late_weights(self, targets: dict[str, np.ndarray]) -> np.ndarray:
        """Each sample's ``late_weight`` (:mod:`trainer.losses.pending`), updating the estimate."""
        if not all(key in targets for key in TIME_FIELDS):
            return np.ones(len(targets["label"]), np.float32)
        weights = self.pending.observe(targets, targets["attribution"], targets.get("partition"))
        return weights if self.config.loss.pending_clicks else np.ones_like(weights)

    def pending_on_negatives(self) -> bool:
        """Whether the extra late weight is spread over NEGATIVEs (``loss.pending_on``; auto: with a
        day-level hot start's matured history)."""
        where = self.config.loss.pending_on
        return where == "negatives" or (where == "auto" and self.pending.has_history)

    def set_learning_rate_scale(self, scale: float) -> None:
        """Scale Adam's learning rate (the deep part); FTRL's per-coordinate rates decay by themselves."""
        self.model.deep_optimizer.learning_rate.assign(self.config.optimizer.adam_learning_rate * scale)

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        return self._logits(batch.inputs()).numpy()

    def outputs(self, batch: EncodedBatch, chunk: int = 65536) -> dict[str, np.ndarray]:
        """The model's outputs (inference mode) for a batch of any size."""
        parts: dict[str, list[np.ndarray]] = {}
        inputs = batch.inputs()
        for start in range(0, len(batch.ids), chunk):
            out = self.model({k: v[start : start + chunk] for k, v in inputs.items()})
            for key, value in out.items():
                parts.setdefault(key, []).append(np.asarray(value))
        return {key: np.concatenate(values) for key, values in parts.items()}

    def finish(self, prepared: PreparedTable, targets: dict[str, np.ndarray]) -> float | None:
        """End of an offline shuffled fit: swap in the averaged deep weights, then (if configured) refit
        the bias. In stream order nothing happens: the model is what the train steps made it, as in the
        streaming sidecar, which never reaches an end."""
        if self.config.fit.order == "stream":
            return None
        optimizer = self.model.deep_optimizer
        if optimizer.use_ema:
            optimizer.finalize_variable_values(self.model.deep_variables)
            if self.frozen.taken:  # the average of a held row is not bit for bit the row
                self.frozen.restore()
        if not self.config.fit.refit_bias:
            return None
        return self.refit_bias(self.encoder.peek(prepared, np.arange(len(prepared.table))), targets)

    def refit_bias(self, batch: EncodedBatch, targets: dict[str, np.ndarray]) -> float:
        """Re-solve the global bias on ``batch`` (full batch, every other weight frozen).

        Solves d(loss)/d(bias) = 0 by bisection, with the loss's stop-gradients in place (so FNW's
        and ES-DFM's weights count as constants, as in training); returns the shift applied.
        """
        outputs = {k: tf.constant(v) for k, v in self.outputs(batch).items()}
        target_t = {k: tf.constant(v) for k, v in targets.items()}
        distill = self.config.loss.distill_weight

        def slope(shift: float) -> float:
            delta = tf.constant(shift, tf.float32)
            with tf.GradientTape() as tape:
                tape.watch(delta)
                shifted = {**outputs, "logit": outputs["logit"] + delta}
                loss = self.loss(target_t, shifted)["loss"]
                if distill > 0.0:
                    loss += distill * tf.reduce_mean(cross_entropy(target_t["teacher"], shifted["logit"]))
            return float(tape.gradient(loss, delta))

        low, high = -4.0, 4.0
        if slope(low) > 0.0 or slope(high) < 0.0:
            log.warning("bias refit: no root in [%g, %g]; bias left as trained", low, high)
            return 0.0
        for _ in range(40):
            middle = 0.5 * (low + high)
            if slope(middle) > 0.0:
                high = middle
            else:
                low = middle
        shift = 0.5 * (low + high)
        self.model.shift_bias(shift)
        log.info("bias refit on %d samples: shift %+.4f", len(batch.ids), shift)
        return shift

    # -- persistence -------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        return {
            "format": META_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "spec": self.spec.to_json(),
            "loss": self.loss.name,
            "calibration": self.loss.calibration,
            "step": self.step,
            "pending_clicks": self.pending.to_json(),
        }

    def checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(
            model=self.model,
            wide_optimizer=self.model.wide_optimizer,
            deep_optimizer=self.model.deep_optimizer,
            vocab=vocab_state(self.encoder.vocabs),
            step=self.step_var,
            pending_clicks=self.pending,
        )

    def restore_checkpoint(self, prefix: str) -> None:
        """Restore the checkpoint ``prefix`` (written by :meth:`save_checkpoint`) in place."""
        self.checkpoint().restore(prefix).expect_partial()
        self._step = int(self.step_var.numpy())
        self.weights_loaded(prefix)

    def weights_loaded(self, source: str) -> None:
        """The weights were just set from ``source`` (a checkpoint, an export): the frozen fields keep
        these values from the next train step on."""
        self.loaded_from = source
        self.frozen.taken = False

    def _take_frozen(self) -> None:
        self.frozen.take()
        fields = ", ".join(self.config.features.frozen)
        if not fields:
            return
        if self.loaded_from is None:
            log.info("features.frozen: %s stay at their initialisation (no warm start to keep the values of)", fields)
        else:
            log.info(
                "features.frozen: %s keep the values of %s (%d rows in %d tables)",
                fields, self.loaded_from, self.frozen.rows, len(self.frozen.tables),
            )

    def save_checkpoint(self, directory: str | os.PathLike[str], max_to_keep: int = 3) -> str:
        """Write ``trainer.json`` and a new checkpoint (model, optimizers, vocabularies, step)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / META_FILE, json.dumps(self.meta(), separators=(",", ":")))
        manager = tf.train.CheckpointManager(self.checkpoint(), str(directory), max_to_keep=max_to_keep)
        return str(manager.save(checkpoint_number=self.step))


def frozen_tables(model: Any, spec: FeatureSpec, fields: Sequence[str]) -> list[tuple[Any, np.ndarray]]:
    """(variable, rows) that ``features.frozen`` holds: the fields' rows of every per-id table (their
    embeddings, wide weights and FM factors; a multi-hash field's every sub-table) and the rows of the
    crosses between frozen fields only (a cross with a trained field goes on learning).

    Raises :class:`~trainer.errors.TrainerError` naming a field the model has no rows for."""
    categorical = list(dict.fromkeys(spec.base_fields))
    missing = [f for f in fields if f not in categorical]
    if missing:
        raise TrainerError(
            f"features.frozen names {', '.join(missing)}, which the model has no embeddings for "
            f"(its categorical fields: {', '.join(categorical)})"
        )
    if not fields:
        return []
    frozen = set(fields)
    base = np.concatenate(
        [
            np.arange(offset, offset + size)
            for name, offset, size in zip(spec.base_fields, spec.base_offsets, spec.base_sizes, strict=True)
            if name in frozen
        ]
    )
    tables = [(variable, base) for variable, _ in model.row_tables()]
    crosses = [
        np.arange(offset, offset + n)
        for (a, b, n), offset in zip(spec.crosses, field_offsets(spec.cross_sizes), strict=True)
        if a in frozen and b in frozen
    ]
    if crosses:  # the wide part's (a two-tower model has none)
        cross_rows = np.concatenate(crosses)
        tables += [(layer.cross_linear, cross_rows) for layer in model.layers if isinstance(layer, WideLayer)]
    return tables


def read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelDirError(
            f"{path.parent} is not a trainer checkpoint or export (cannot read {path.name}: {exc.strerror or exc})"
        ) from exc
    except ValueError as exc:
        raise ModelDirError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise ModelDirError(f"{path} has an unsupported format (expected format {META_FORMAT})")
    return meta


