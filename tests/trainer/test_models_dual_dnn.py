"""The dual DNN (model.name: dual_dnn): teacher and student on shared embeddings, trained together;
the transfer terms' stop-gradients; the student alone exported; fit, warm start and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from models_helpers import config, table, train, write_config

from common.errors import ConfigError
from trainer.config import TrainerConfig
from trainer.export import ExportedModel, export_state
from trainer.fit import targets
from trainer.models import DualDNNModel, WideDeepModel
from trainer.state import TrainerState
from trainer.warm_start import warm_start


def test_model_name_selects_the_model_and_defaults_to_wide_deep() -> None:
    assert TrainerConfig().model.name == "wide_deep"
    data = table(300)
    for name, cls in (("wide_deep", WideDeepModel), ("dual_dnn", DualDNNModel)):
        assert type(TrainerState.create(config(name), data).model) is cls
    with pytest.raises(ConfigError, match=r"model\.name"):
        TrainerConfig.load(None, {"model.name": "three_tower"})


def test_initialisers_are_deterministic_and_the_model_round_trips_through_keras(tmp_path: Path) -> None:
    data = table(300)
    a, b = TrainerState.create(config("dual_dnn"), data), TrainerState.create(config("dual_dnn"), data)
    for va, vb in zip(a.model.weights, b.model.weights, strict=True):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    c = TrainerState.create(config("dual_dnn", **{"fit.seed": 1}), data)
    assert not np.array_equal(a.model.embedding.embeddings.numpy(), c.model.embedding.embeddings.numpy())
    train(a, data, 3)
    path = tmp_path / "dual.keras"
    a.model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, DualDNNModel) and restored.get_config() == a.model.get_config()
    inputs = a.encoder.peek(a.prepare(data), np.arange(50)).inputs()
    for key in ("logit", "teacher_logit"):
        np.testing.assert_allclose(restored(inputs)[key].numpy(), a.model(inputs)[key].numpy(), rtol=1e-6)


def test_one_step_trains_teacher_student_and_the_shared_embeddings() -> None:
    data = table(300)
    state = TrainerState.create(config("dual_dnn", loss="esdfm"), data)
    model = state.model
    heads = ["dual_dnn/dp_head/bias", "dual_dnn/rn_head/bias"]  # FTRL's too (a cold start's heads catch up)
    assert [v.path for v in model.wide_variables] == [v.path for v in model.wide.trainable_variables] + heads
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    metrics = train(state, data, 1)
    assert {"loss", "teacher_loss", "transfer_loss", "hint_loss", "dp_loss", "total_loss"} <= set(metrics)
    moved = {v.path for v in model.trainable_variables if not np.array_equal(before[v.path], v.numpy())}
    parts = ("embedding/embeddings", "wide/bias", "teacher_mlp/output/kernel", "cross/kernel_0",
             "student/output/kernel", "hint/kernel", "dp_head/kernel")
    for part in parts:
        assert f"dual_dnn/{part}" in moved, part


def test_transfer_terms_do_not_train_the_teacher() -> None:
    """The student learns from the teacher's predictions and hidden layer (stop-gradient): those terms
    move the student, the hint projection and the shared embeddings, never the teacher's own weights."""
    data = table(300)
    state = TrainerState.create(config("dual_dnn"), data)
    model = state.model
    rows = np.arange(128)
    batch = state.encoder.peek(state.prepare(data), rows)
    with tf.GradientTape() as tape:
        outputs = model(batch.inputs(), training=True)
        terms = model.model_losses(targets(data, rows, None), outputs)
        transfer = terms["transfer_loss"][0] + terms["hint_loss"][0]
    variables = model.trainable_variables
    grads = dict(zip([v.path for v in variables], tape.gradient(transfer, variables), strict=True))
    teacher = [p for p in grads if p.split("/")[1] in ("wide", "teacher_mlp", "cross", "cross_output")]
    assert teacher and all(grads[p] is None for p in teacher)
    for part in ("student/output/kernel", "hint/kernel", "embedding/embeddings"):
        assert grads[f"dual_dnn/{part}"] is not None, part


def test_the_export_serves_the_student_alone_and_the_checkpoint_keeps_the_teacher(tmp_path: Path) -> None:
    data = table(600)
    state = TrainerState.create(config("dual_dnn"), data)
    train(state, data, 4)
    export = export_state(state, tmp_path / "export")
    names = {v.name.split(":")[0] for v in tf.saved_model.load(str(export)).variables}
    assert names and all(n.startswith(("dual_dnn/embedding/", "dual_dnn/student/")) for n in names), names
    served = ExportedModel(export).predict(data)
    batch = state.encoder.peek(state.prepare(data), np.arange(len(data)))
    outputs = state.outputs(batch)
    np.testing.assert_allclose(served, 1.0 / (1.0 + np.exp(-outputs["logit"])), rtol=1e-5, atol=1e-6)
    assert json.loads((export / "assets.extra" / "trainer.json").read_text())["served"] == {"served": "student"}
    # the checkpoint holds the teacher: a warm start from it scores the teacher as it was
    state.save_checkpoint(tmp_path / "ckpt")
    resumed = warm_start(tmp_path / "ckpt", config("dual_dnn"))
    np.testing.assert_array_equal(resumed.outputs(batch)["teacher_logit"], outputs["teacher_logit"])
    # an export holds the student and the embeddings: a warm start from it serves the same student
    warm = warm_start(export, config("dual_dnn"))
    np.testing.assert_array_equal(ExportedModel(export_state(warm, tmp_path / "again")).predict(data), served)


def test_fit_through_the_cli_and_the_student_is_smaller(train_file: Path, test_file: Path, tmp_path: Path) -> None:
    from trainer.__main__ import main

    cfg = write_config(tmp_path / "dual.yaml", "dual_dnn")
    export = tmp_path / "dual"
    args = ["fit", "--samples", str(train_file), "--config", str(cfg), "--epochs", "1", "--quiet"]
    assert main([*args, "--export", str(export), "--checkpoint-dir", str(tmp_path / "ckpt")]) == 0
    assert main(["evaluate", "--model", str(export), "--samples", str(test_file), "--json", "--quiet"]) == 0
    state = warm_start(tmp_path / "ckpt", TrainerConfig())
    assert isinstance(state.model, DualDNNModel)  # the saved architecture wins over the run's default
    counts = state.model.parameter_counts()
    assert counts["student"] < counts["teacher"]
