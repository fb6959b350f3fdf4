"""Offline fit: samples files -> trained state -> export (and/or checkpoint).

The loop is the one the sidecar will run on Kafka batches: rows -> :meth:`TrainerState.encode`
(vocabulary admission/eviction) -> :meth:`TrainerState.train_on_batch` (slot resets, one
FTRL+Adam step).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.config import FitConfig, TrainerConfig
from trainer.pipeline import batch_rows, impression_hashes
from trainer.replay import with_horizon_duplicates
from trainer.samples import ReadStats, SampleTable, read_samples

if TYPE_CHECKING:
    from trainer.state import TrainerState

log = logging.getLogger("trainer")


def setup_determinism(seed: int) -> None:
    """Seed Python, NumPy, TF and Keras, and make TF's kernels deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def choose_device() -> tuple[str, str]:
    """The device to train on, and a description for the log: the GPU when TensorFlow sees one.

    With op determinism on, TensorFlow refuses GPU kernels that are not deterministic; embedding
    gradients (sparse -> dense, a segment sum) are probed first, and training falls back to the CPU
    when the GPU has no deterministic kernel for them.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "/CPU:0", "CPU (TensorFlow sees no GPU)"
    try:
        with tf.device("/GPU:0"):
            slices = tf.IndexedSlices(tf.ones([2, 2]), tf.constant([0, 0]), tf.constant([3, 2]))
            tf.convert_to_tensor(slices).numpy()
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError) as exc:
        return "/CPU:0", f"CPU (the GPU has no deterministic kernel for embedding gradients: {exc.message[:80]})"
    return "/GPU:0", "GPU (" + ", ".join(g.name for g in gpus) + ")"


@dataclass
class FitResult:
    samples: int
    steps: int
    epochs: int
    seconds: float
    final_loss: float | None
    export: Path | None = None
    checkpoint: str | None = None
    read: ReadStats = field(default_factory=ReadStats)
    vocab: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "export": str(self.export) if self.export else None,
            "checkpoint": self.checkpoint,
            "samples": self.samples,
            "steps": self.steps,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 3),
            "final_loss": self.final_loss,
            **self.read.to_json(),
            "vocab": self.vocab,
        }


def targets(table: SampleTable, rows: np.ndarray, teacher: np.ndarray | None) -> dict[str, np.ndarray]:
    return {
        "label": table.labels[rows],
        "attribution": table.attributions[rows],
        "teacher": teacher[rows].astype(np.float32) if teacher is not None else np.zeros(len(rows), np.float32),
        **{name: column[rows] for name, column in table.times.items()},
    }


def learning_rate_scale(config: FitConfig, step: int, total_steps: int) -> float:
    if config.lr_schedule == "constant" or total_steps <= 1:
        return 1.0
    progress = min(1.0, step / (total_steps - 1))
    return config.lr_floor + (1.0 - config.lr_floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cold_stream_state(config: TrainerConfig, table: SampleTable) -> TrainerState:
    """A state as the sidecar starts a cold stream (``trainer/sidecar/loop.py``), so that ``fit --order
    stream --epochs 1`` takes the sidecar's steps from the same start: vocabularies sized up front
    (``sidecar.vocab_capacity`` unless ``features.vocab.capacity`` is set: a stream's size is not known
    ahead) and the bias at logit 0 (nor is its click rate)."""
    from trainer.features import FeatureSpec
    from trainer.state import TrainerState

    vocab = config.features.vocab
    if vocab.capacity is None:
        vocab = vocab.model_copy(update={"capacity": config.sidecar.vocab_capacity})
    config = config.model_copy(update={"features": config.features.model_copy(update={"vocab": vocab})})
    return TrainerState(config, FeatureSpec.from_table(table, config.features))


def fit(
    samples: Sequence[str | os.PathLike[str]],
    config: TrainerConfig,
    export: str | os.PathLike[str] | None = None,
    warm_start: str | os.PathLike[str] | None = None,
    distill_from: str | os.PathLike[str] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    deadletter: str | os.PathLike[str] | None = None,
) -> FitResult:
    """Train on ``samples`` as ``config`` says; export and/or checkpoint the result."""
    import tensorflow as tf

    setup_determinism(config.fit.seed)
    device, description = choose_device()
    log.info("device: %s", description)
    with tf.device(device):
        return _fit(samples, config, export, warm_start, distill_from, checkpoint_dir, deadletter)


def _fit(
    samples: Sequence[str | os.PathLike[str]],
    config: TrainerConfig,
    export: str | os.PathLike[str] | None,
    warm_start: str | os.PathLike[str] | None,
    distill_from: str | os.PathLike[str] | None,
    checkpoint_dir: str | os.PathLike[str] | None,
    deadletter: str | os.PathLike[str] | None,
) -> FitResult:
    from trainer.export import ExportedModel, export_state
    from trainer.state import TrainerState
    from trainer.warm_start import warm_start as warm_started

    started = time.monotonic()
    rows, read = read_samples(samples, deadletter=deadletter)
    log.info("read %d samples from %d file(s)", len(rows), len(samples))
    if config.loss.name == "defer":
        read_count = len(rows)
        rows = with_horizon_duplicates(rows, config.loss.attribution_horizon_ms)
        log.info("defer: %d duplicates at the attribution horizon added", len(rows) - read_count)
    table = SampleTable(rows)
    if warm_start is not None:
        state = warm_started(warm_start, config)
    elif config.fit.order == "stream":
        state = cold_stream_state(config, table)
    else:
        state = TrainerState.create(config, table)
    teacher = None
    if distill_from is not None:
        teacher = ExportedModel(distill_from).predict(table)
        log.info("distilling toward %s (weight %g)", distill_from, config.loss.distill_weight)
    elif state.config.model.cascade_teacher is not None:  # a two-tower model's fine model
        teacher = ExportedModel(state.config.model.cascade_teacher).predict(table)
        log.info("cascade distillation from %s", state.config.model.cascade_teacher)
    fit_cfg = config.fit
    state.set_order(fit_cfg.order)
    if fit_cfg.order == "shuffle":
        # Offline epochs train on matured labels: their delays are the history a stream starts from.
        state.pending.record_history(table.times, table.attributions)
    prepared = state.prepare(table)
    hashes = impression_hashes(table, fit_cfg.seed) if fit_cfg.order == "shuffle" else None
    steps_per_epoch = sum(1 for _ in batch_rows(table, fit_cfg.batch_size, fit_cfg.order, fit_cfg.seed, 0, hashes))
    total_steps = steps_per_epoch * fit_cfg.epochs
    log.info(
        "training %s loss: %d epochs x %d steps (batch %d, %s order)",
        config.loss.name,
        fit_cfg.epochs,
        steps_per_epoch,
        fit_cfg.batch_size,
        fit_cfg.order,
    )
    done = 0
    train_started = last_report = time.monotonic()
    window_loss, window_n, final_loss = 0.0, 0, None
    for epoch in range(fit_cfg.epochs):
        for batch_index in batch_rows(table, fit_cfg.batch_size, fit_cfg.order, fit_cfg.seed, epoch, hashes):
            state.set_learning_rate_scale(learning_rate_scale(fit_cfg, done, total_steps))
            metrics = state.train_on_batch(state.encode(prepared, batch_index), targets(table, batch_index, teacher))
            done += 1
            window_loss += metrics["total_loss"]
            window_n += 1
            now = time.monotonic()
            if now - last_report >= fit_cfg.progress_every_s or done == total_steps:
                final_loss = window_loss / window_n
                log.info(
                    "epoch %d/%d step %d/%d loss %.5f (%.0f steps/s)",
                    epoch + 1,
                    fit_cfg.epochs,
                    done,
                    total_steps,
                    final_loss,
                    done / max(now - train_started, 1e-9),
                )
                last_report, window_loss, window_n = now, 0.0, 0
    state.finish(prepared, targets(table, np.arange(len(table)), teacher))
    result = FitResult(
        samples=len(table),
        steps=done,
        epochs=fit_cfg.epochs,
        seconds=0.0,
        final_loss=final_loss,
        read=read,
        vocab=state.vocabs.stats(),
    )
    if checkpoint_dir is not None:
        result.checkpoint = state.save_checkpoint(checkpoint_dir)
        log.info("checkpoint written: %s", result.checkpoint)
    if export is not None:
        result.export = export_state(state, export)
        log.info("exported to %s", result.export)
    result.seconds = time.monotonic() - started
    return result
