"""Start a training state from an earlier one: a checkpoint directory or an export.

Its own module so that :mod:`trainer.state` (the state, its checkpoints) and :mod:`trainer.export`
(the SavedModel) need not import each other: a warm start reads both. The architecture (features,
model) comes from the saved state, the rest (loss, optimizer, fit, sidecar) from the run's config.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import tensorflow as tf

from trainer.config import TrainerConfig
from trainer.errors import ModelDirError
from trainer.export import (
    META_PATH,
    exported_values,
    is_export,
    latest_version,
    read_export_meta,
    resolve_model_dir,
    variable_key,
)
from trainer.features import FeatureSpec
from trainer.optim import sync_average, sync_ftrl
from trainer.state import META_FILE, TrainerState, read_meta
from trainer.vocab import VocabSet

log = logging.getLogger("trainer")


def warm_start(path: str | os.PathLike[str], config: TrainerConfig) -> TrainerState:
    """From a checkpoint directory (``trainer.json`` + a tf.train checkpoint) or an export (or a base
    directory of numbered exports: the latest).

    A warm start begins another stream (the day-level hot start, a model handed to a new sidecar):
    the delays the saved state counted join its history, its stream position does not carry over.
    (A sidecar resuming its own checkpoint restores it as it was.)"""
    directory = Path(path)
    if is_export(directory) or latest_version(directory) is not None:
        state = from_export(directory, config)
    else:
        state = from_checkpoint(directory, config)
    state.pending.new_stream()
    return state


def merge_architecture(config: TrainerConfig, meta: dict[str, Any]) -> TrainerConfig:
    """``config`` with the features and model sections of a saved state (the architecture is fixed;
    what only steers training, such as ``features.frozen``, is the run's)."""
    saved = TrainerConfig.from_json(meta["config"])
    features = saved.features.model_copy(update={"frozen": config.features.frozen})
    if saved.model != config.model or features != config.features:
        log.info("warm start: keeping the saved model's features and model settings")
    return config.model_copy(
        update={"features": features, "model": saved.model.with_training_settings_of(config.model)}
    )


def checkpointed_state(directory: Path, config: TrainerConfig) -> TrainerState:
    """A fresh state laid out as the checkpoints in ``directory`` (its ``trainer.json``), to restore
    one of them into (here, and when the sidecar resumes its own)."""
    meta = read_meta(directory / META_FILE)
    return TrainerState(merge_architecture(config, meta), FeatureSpec.from_json(meta["spec"]))


def from_checkpoint(directory: Path, config: TrainerConfig) -> TrainerState:
    """The latest checkpoint of ``directory``: weights, optimizer slots, vocabularies, step."""
    state = checkpointed_state(directory, config)
    latest = tf.train.latest_checkpoint(str(directory))
    if latest is None:
        raise ModelDirError(f"warm start: {directory} holds no checkpoint")
    try:
        state.restore_checkpoint(latest)
    except (tf.errors.OpError, ValueError, AssertionError) as exc:
        raise ModelDirError(f"warm start: cannot restore {latest}: {exc}") from exc
    log.info("warm start from checkpoint %s (step %d)", latest, state.step)
    return state


def from_export(directory: Path, config: TrainerConfig) -> TrainerState:
    """A state with an export's architecture, vocabulary and weights (optimizer state starts afresh)."""
    directory = resolve_model_dir(directory)
    meta = read_export_meta(directory)
    if meta is None or "vocab" not in meta:
        raise ModelDirError(f"warm start: {directory} was not exported by this trainer (no {META_PATH})")
    state = TrainerState(
        merge_architecture(config, meta), FeatureSpec.from_json(meta["spec"]), VocabSet.from_json(meta["vocab"])
    )
    try:
        values = exported_values(directory, state.model)
    except ModelDirError as exc:
        raise ModelDirError(f"warm start: {exc}") from None
    for variable in state.model.variables:
        value = values.get(variable_key(variable.path))
        if value is not None:
            variable.assign(value)
    restored = len(values)
    sync_ftrl(state.model.wide_optimizer, state.model.wide_variables)
    sync_average(state.model.deep_optimizer, state.model.deep_variables)
    state.weights_loaded(str(directory))
    state.set_step(int(meta.get("step", 0)))
    if "pending_clicks" in meta:
        state.pending.load_json(meta["pending_clicks"])
    log.info(
        "warm start from export %s (%d of %d variables, step %d)",
        directory,
        restored,
        len(state.model.variables),
        state.step,
    )
    return state

