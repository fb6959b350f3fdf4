"""The two-tower coarse ranker (model.name: two_tower): the field split, the pruned export scoring
exactly as the full one, one user against N items, cascade distillation and its rising lambda."""

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
from trainer.features import FeatureSpec
from trainer.models import TwoTowerModel
from trainer.models.two_tower import SCORE_ITEMS, split_fields, teacher_logit
from trainer.state import TrainerState
from trainer.warm_start import warm_start

SPEC = FeatureSpec(
    tracked=(("user_id", 16), ("item_id", 8), ("context.item_cat", 8)),
    hashed=(("position", 4), ("context.page", 4)),
    crosses=(("user_id", "item_id", 32),),
    dense=("dense.u_ctr_7d", "dense.i_ctr"),
)


def test_fields_split_into_user_item_and_ignored() -> None:
    sides = split_fields(SPEC, ("item_id", "context.item_*", "dense.i_*"), ("position",))
    assert sides == {"user_base": [0, 4], "item_base": [1, 2], "user_dense": [0], "item_dense": [1]}
    with pytest.raises(ConfigError, match="item tower gets no categorical field"):
        split_fields(SPEC, ("video_id",), ())
    with pytest.raises(ConfigError, match="user tower gets no categorical field"):
        split_fields(SPEC, ("*_id", "context.*"), ("position",))


def test_teacher_logit_undoes_the_calibration() -> None:
    logits = np.array([-3.0, -0.5, 0.0, 2.0], np.float32)
    b = 1.0 / (1.0 + np.exp(-logits))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(teacher_logit(b, "identity")), logits, rtol=1e-5, atol=1e-5)
    # fnc serves b / (1 - b), a probability only for b <= 1/2 (it is clipped below 1): logits <= 0
    fnc = (b / (1.0 - b))[:3]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(teacher_logit(fnc, "fnc")), logits[:3], rtol=1e-5, atol=1e-5)


def test_keras_round_trip_and_ftrl_trains_the_rows_and_the_heads_biases(tmp_path: Path) -> None:
    data = table(300)
    state = TrainerState.create(config("two_tower", loss="esdfm"), data)
    model = state.model
    assert isinstance(model, TwoTowerModel)
    assert [v.path for v in model.wide_variables] == [  # and the heads' biases (a cold start's heads catch up)
        "two_tower/embedding/embeddings", "two_tower/dp_head/bias", "two_tower/rn_head/bias"
    ]
    assert model.wide_optimizer.l1_regularization_strength == model.embedding_l1
    metrics = train(state, data, 3)
    assert np.isfinite(metrics["total_loss"]) and "dp_loss" in metrics
    path = tmp_path / "tt.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_config() == model.get_config()
    inputs = state.encoder.peek(state.prepare(data), np.arange(40)).inputs()
    np.testing.assert_allclose(restored(inputs)["logit"].numpy(), model(inputs)["logit"].numpy(), rtol=1e-6)


@pytest.fixture(scope="module")
def trained() -> tuple[TrainerState, object]:
    """A two-tower model whose L1 has zeroed rows of ids it trained on (and kept others)."""
    data = table(1500, seed=5)
    state = TrainerState.create(config("two_tower"), data)
    train(state, data, 24)
    return state, data


def test_both_towers_learn_their_rows_from_zero(trained) -> None:
    # The item tower has no dense input here: with closed ReLUs (zero bias on an all-zero input) its
    # rows would never receive a gradient, and every item would score alike.
    state, _ = trained
    embeddings, offsets = state.model.embedding.embeddings.numpy(), state.spec.base_offsets
    fields = state.spec.base_fields
    for field in ("user_id", "item_id"):
        at = fields.index(field)
        assert np.any(embeddings[offsets[at] : offsets[at + 1]] != 0), field


def test_the_pruned_export_scores_exactly_as_the_full_one(trained, tmp_path: Path) -> None:
    state, data = trained
    model = state.model
    embeddings = model.embedding.embeddings.numpy()
    zero = ~np.any(embeddings != 0, axis=1)
    batch = state.encoder.peek(state.prepare(data), np.arange(len(data)))
    used = np.unique(batch.ids[:, :2] + np.array(state.spec.base_offsets[:2]))  # user and item rows in the data
    pruned_used = used[zero[used]]
    assert len(pruned_used) > 0 and (~zero[used]).any()  # the samples include ids whose rows were pruned
    pruned = export_state(state, tmp_path / "pruned")
    model.prune_export = False
    try:
        full = export_state(state, tmp_path / "full")
    finally:
        model.prune_export = True
    p_pruned, p_full = ExportedModel(pruned).predict(data), ExportedModel(full).predict(data)
    np.testing.assert_array_equal(p_pruned, p_full)
    meta = json.loads((pruned / "assets.extra" / "trainer.json").read_text())["served"]
    assert meta["rows"] == len(embeddings) and meta["pruned_rows"] == int(zero.sum())
    assert meta["pruned_table_bytes"] < meta["table_bytes"]

    def variable_bytes(directory: Path) -> int:
        return sum(f.stat().st_size for f in (directory / "variables").iterdir())

    assert variable_bytes(pruned) < variable_bytes(full)
    # a warm start from the pruned export has the whole table back
    warm = warm_start(pruned, config("two_tower"))
    np.testing.assert_array_equal(warm.model.embedding.embeddings.numpy(), embeddings)


def test_one_user_against_n_items_scores_as_n_single_calls(trained, tmp_path: Path) -> None:
    state, _ = trained
    loaded = tf.saved_model.load(str(export_state(state, tmp_path / "export")))
    single, many = loaded.signatures["serving_default"], loaded.signatures[SCORE_ITEMS]
    user_fields = {"user_id", "context_page", "sparse_city", "dense_u_ctr_7d"}
    item_fields = {"item_id"}
    assert set(many.structured_input_signature[1]) == user_fields | item_fields
    items = [f"v{i:04d}" for i in range(20)] + ["never-seen"]
    user = {"user_id": ["u0003"], "context_page": ["search"], "sparse_city": ["c3"], "dense_u_ctr_7d": [0.2]}
    scores = many(**{k: tf.constant(v) for k, v in user.items()}, item_id=tf.constant(items))["probability"].numpy()
    one_by_one = np.array(
        [
            single(
                **{k: tf.constant(v) for k, v in user.items()}, item_id=tf.constant([item]),
                position=tf.constant([2], tf.int64),  # ignored by the towers
            )["probability"].numpy()[0]
            for item in items
        ]
    )
    assert scores.shape == (len(items),) and len(set(scores.tolist())) > 1
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-6, atol=0)


def test_cascade_distillation_pulls_toward_the_fine_model_with_a_rising_lambda(exported: Path) -> None:
    data = table(1500, seed=5)
    fine = ExportedModel(exported).predict(data)
    fine_logit = np.log(fine / (1.0 - fine))
    ramp = {"distill_from": str(exported), "distill_weight": 2.0, "distill_ramp_steps": 10}
    distilled = TrainerState.create(config("two_tower", two_tower=ramp), data)
    plain = TrainerState.create(config("two_tower"), data)
    assert float(distilled.model.distill_lambda()) == 0.0
    train(distilled, data, 5, teacher=fine)
    assert float(distilled.model.distill_lambda()) == pytest.approx(1.0)  # half way up the ramp
    train(distilled, data, 15, teacher=fine)
    assert float(distilled.model.distill_lambda()) == pytest.approx(2.0)  # and it stays at the top
    train(plain, data, 20)
    batch = distilled.encoder.peek(distilled.prepare(data), np.arange(len(data)))

    def gap(state: TrainerState) -> float:
        return float(np.mean((state.outputs(batch)["logit"] - fine_logit) ** 2))

    assert gap(distilled) < 0.5 * gap(plain)


def test_fit_distils_from_the_named_fine_model(exported: Path, train_file: Path, tmp_path: Path, capsys) -> None:
    from trainer.__main__ import main

    cfg = write_config(tmp_path / "tt.yaml", "two_tower", distill_from=str(exported), distill_ramp_steps=5)
    args = ["fit", "--samples", str(train_file), "--config", str(cfg), "--epochs", "1"]
    args += ["--export", str(tmp_path / "tt")]
    assert main(args) == 0
    assert f"cascade distillation from {exported}" in capsys.readouterr().err
    # one teacher: the cascade's, or --distill-from's, not both
    assert main([*args, "--distill-from", str(exported), "--quiet"]) == 2
    assert "expected one teacher" in capsys.readouterr().err
    cascade = {"model.name": "two_tower", "model.two_tower.distill_from": str(exported)}
    with pytest.raises(ConfigError, match="expected one teacher"):  # the sidecar's --distill-from too
        TrainerConfig.load(None, {**cascade, "sidecar.distill_from": str(exported)})
