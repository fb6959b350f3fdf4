"""Export a trained state as a self-contained SavedModel, and read one back.

The served function (Keras ``model.export()``, endpoint ``serve`` and signature ``serving_default``)
takes the sample's feature fields by name (``user_id``, ``item_id``, ``position``, ``context_KEY``,
``sparse_KEY``, ``dense_KEY``; 1-D batches) and returns ``{"probability": ...}``, the calibrated
probability. It holds the vocabulary as lookup tables, so serving needs nothing else.

``assets.extra/trainer.json`` (ignored by TF Serving) records the config, the feature layout, the
signature's names and the vocabulary state, for `evaluate` and for warm starts
(:mod:`trainer.warm_start`). An export is written to a temporary sibling directory and renamed into
place, so readers never see a half-written one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from trainer.errors import ModelDirError
from trainer.features import FeatureLookup, signature_name
from trainer.layers import Calibration
from trainer.state import TrainerState, read_meta

if TYPE_CHECKING:
    from trainer.models.base import Served

log = logging.getLogger("trainer")

META_PATH = Path("assets.extra") / "trainer.json"


def is_export(directory: Path) -> bool:
    return (directory / "saved_model.pb").is_file()


def latest_version(directory: Path) -> Path | None:
    """The highest numeric version subdirectory holding a SavedModel (TF Serving layout), if any."""
    if not directory.is_dir():
        return None
    versions = [p for p in directory.iterdir() if p.name.isdigit() and is_export(p)]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """An export directory, or a base directory whose latest version is used."""
    directory = Path(path)
    if is_export(directory):
        return directory
    latest = latest_version(directory)
    if latest is not None:
        return latest
    if not directory.exists():
        raise ModelDirError(f"model directory {directory} does not exist")
    raise ModelDirError(f"{directory} holds no SavedModel (no saved_model.pb, nor numbered versions with one)")


def serving_model(state: TrainerState, served: Served | None = None) -> keras.Model:
    """Raw features by name -> lookup/hash -> the model's served logit -> sigmoid -> calibration."""
    spec = state.spec
    served = served or state.model.served(state.vocabs)
    inputs = {name: keras.Input(shape=(), dtype=ts.dtype.name, name=name) for name, ts in spec.signature().items()}
    features = FeatureLookup.from_vocabs(spec, state.vocabs, name="feature_lookup")(inputs)
    logit = served.logit(features)
    calibration = Calibration(state.loss.calibration, state.config.loss.fnc_max_probability, name="calibration")
    probability = calibration(keras.ops.sigmoid(logit))
    return keras.Model(inputs, {"probability": probability}, name="serving")


def write_saved_model(state: TrainerState, directory: Path) -> dict[str, Any]:
    """``serving_default`` (and the model's further signatures) to ``directory``; returns the model's
    facts about what it serves (for ``trainer.json``)."""
    served = state.model.served(state.vocabs)
    model = serving_model(state, served)
    if served.endpoints is None:
        model.export(str(directory), format="tf_saved_model", verbose=False)
        return served.meta
    calibration = Calibration(state.loss.calibration, state.config.loss.fnc_max_probability, name="calibration")
    archive = keras.export.ExportArchive()
    archive.track_and_add_endpoint("serve", model, [state.spec.signature()])  # first: serving_default
    for endpoint in served.endpoints(lambda logit: calibration(keras.ops.sigmoid(logit))):
        archive.add_endpoint(endpoint.name, endpoint.fn, endpoint.input_signature)
    archive.write_out(str(directory), verbose=False)
    return served.meta


def export_meta(state: TrainerState) -> dict[str, Any]:
    """What ``trainer.json`` records of ``state``; the export adds ``served``, what the model serves."""
    return {
        **state.meta(),
        "signature": {signature_name(f): f for f in state.spec.fields},
        "vocab": state.vocabs.to_json(),
    }


def export_state(
    state: TrainerState,
    directory: str | os.PathLike[str],
    meta: dict[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Export ``state`` to ``directory`` atomically (replacing an earlier export there).

    ``meta``: ``trainer.json`` without ``served`` when not ``state``'s own (a delta chain's, applied);
    ``extra(tmp)`` adds files to the export before it is renamed into place (a delta beside it)."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ModelDirError(f"export path {target} exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        served = write_saved_model(state, tmp)
        meta = {**(export_meta(state) if meta is None else meta), **({"served": served} if served else {})}
        (tmp / META_PATH).parent.mkdir(parents=True, exist_ok=True)
        (tmp / META_PATH).write_text(json.dumps(meta, separators=(",", ":")), encoding="utf-8")
        if extra is not None:
            extra(tmp)
        replace_directory(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def replace_directory(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is swapped out first, then removed."""
    if not target.exists():
        os.rename(new, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def exported_values(directory: Path, model: Any) -> dict[str, np.ndarray]:
    """The values an export holds for ``model``'s variables, by variable path: the variables it serves
    (a pruned table made whole again), not those it leaves out (a dual DNN's teacher)."""
    try:
        loaded = tf.saved_model.load(str(directory))
    except (OSError, tf.errors.OpError, ValueError) as exc:
        raise ModelDirError(f"cannot load SavedModel {directory}: {' '.join(str(exc).split())}") from exc
    saved = model.exported_variables({variable_key(v.name): v for v in loaded.variables})
    values = {}
    for variable in model.variables:
        source = saved.get(variable_key(variable.path))
        if source is None:
            continue
        value = np.array(source.numpy(), copy=True)
        if value.shape != tuple(variable.shape):
            raise ModelDirError(
                f"variable {variable.path} has shape {value.shape} in {directory}, expected {tuple(variable.shape)}"
            )
        values[variable_key(variable.path)] = value
    if not values:
        raise ModelDirError(f"no variable of {directory} matches the model")
    return values


def variable_key(name: str) -> str:
    """A variable's path without TensorFlow's ``:0`` (how an export's variables match a model's)."""
    return name.split(":")[0]


def read_export_meta(directory: Path) -> dict[str, Any] | None:
    path = directory / META_PATH
    if not path.is_file():
        return None
    return read_meta(path)


class ExportedModel:
    """A loaded export: predicts probabilities for a table of samples through ``serving_default``."""

    def __init__(self, path: str | os.PathLike[str]):
        self.directory = resolve_model_dir(path)
        try:
            self.loaded = tf.saved_model.load(str(self.directory))
        except (OSError, tf.errors.OpError, ValueError) as exc:
            raise ModelDirError(f"cannot load SavedModel {self.directory}: {exc}") from exc
        if "serving_default" not in self.loaded.signatures:
            raise ModelDirError(f"SavedModel {self.directory} has no serving_default signature")
        self.function = self.loaded.signatures["serving_default"]
        self.inputs: dict[str, tf.TensorSpec] = dict(self.function.structured_input_signature[1])
        meta = read_export_meta(self.directory)
        mapping = (meta or {}).get("signature") or {}
        self.fields = {name: mapping.get(name) or _field_from_signature_name(name) for name in self.inputs}
        self.meta = meta

    def predict(self, table: Any, batch_size: int = 8192) -> np.ndarray:
        """Calibrated probabilities for every sample of ``table`` (a SampleTable)."""
        columns = {}
        for name, spec in self.inputs.items():
            column = table.column(self.fields[name])
            if spec.dtype == tf.int64:
                column = np.asarray([int(x) for x in column], np.int64)
            elif spec.dtype.is_floating:
                column = column.astype(spec.dtype.as_numpy_dtype)
            columns[name] = column
        out = []
        for start in range(0, len(table), batch_size):
            batch = {name: tf.constant(col[start : start + batch_size]) for name, col in columns.items()}
            out.append(self.function(**batch)["probability"].numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def _field_from_signature_name(name: str) -> str:
    """Best effort for exports without trainer.json: ``context_page`` -> ``context.page``."""
    for group in ("context", "sparse", "dense"):
        if name.startswith(group + "_"):
            return f"{group}.{name[len(group) + 1 :]}"
    return name
