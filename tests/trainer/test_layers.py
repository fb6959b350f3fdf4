"""Layers and the Wide & Deep model: values by hand, serialisation round trips, seeded initialisers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer.config import LossConfig, OptimizerConfig
from trainer.features import FeatureSpec
from trainer.layers import Calibration, DeepLayer, FactorizationMachine, WideLayer
from trainer.losses.registry import get_loss
from trainer.models import WideDeepModel
from trainer.optim import make_optimizers

SPEC = FeatureSpec(
    tracked=(("user_id", 16), ("item_id", 8)),
    hashed=(("position", 4),),
    crosses=(("user_id", "item_id", 32),),
    dense=("dense.x",),
)


def inputs(batch: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.stack(
        [rng.integers(0, 16, batch), rng.integers(0, 8, batch), rng.integers(0, 4, batch), rng.integers(0, 32, batch)],
        axis=1,
    ).astype(np.int32)
    return {"ids": ids, "dense": rng.normal(size=(batch, 1)).astype(np.float32)}


def model(**kwargs) -> WideDeepModel:
    return WideDeepModel(SPEC.to_json(), hidden_units=(8, 4), seed=7, name="wide_deep", **kwargs).build_from_spec()


def test_fm_by_hand() -> None:
    v = np.array([[[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]]], np.float32)
    # <v1,v2> + <v1,v3> + <v2,v3> = (3 - 2) + (0.5 + 1) + (1.5 - 0.5)
    assert float(FactorizationMachine()(v)[0]) == pytest.approx(1.0 + 1.5 + 1.0)


def test_calibration_fnc_by_hand_and_clipped() -> None:
    layer = Calibration("fnc", max_probability=0.9)
    out = keras.ops.convert_to_numpy(layer(np.array([0.2, 0.4, 0.5, 0.99], np.float32)))
    assert out[0] == pytest.approx(0.25) and out[1] == pytest.approx(0.4 / 0.6, rel=1e-6)
    assert out[2] == pytest.approx(0.9, rel=1e-6) and out[3] == pytest.approx(0.9, rel=1e-6)
    assert keras.ops.convert_to_numpy(Calibration("identity")(np.array([0.7], np.float32)))[0] == pytest.approx(0.7)
    with pytest.raises(ValueError):
        Calibration("isotonic")


@pytest.mark.parametrize("mode", ["identity", "fnc"])
def test_the_sidecars_numpy_calibration_is_the_served_layers(mode: str) -> None:
    """The sidecar scores its evidence with the same formula the export serves (one definition)."""
    from trainer.layers.calibration import calibrated

    b = np.linspace(0.0, 0.999, 101).astype(np.float32)
    served = keras.ops.convert_to_numpy(Calibration(mode, max_probability=0.95)(b))
    np.testing.assert_allclose(calibrated(b, mode, 0.95, np), served, rtol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [
        FactorizationMachine(name="fm"),
        WideLayer([4, 3], [5], num_dense=2, factor_dim=3, seed=1, name="wide"),
        DeepLayer([4, 3], num_dense=2, embedding_dim=3, hidden_units=[5, 2], dropout=0.1, seed=1, name="deep"),
        Calibration("fnc", 0.95, name="cal"),
    ],
)
def test_layer_config_round_trip(layer) -> None:
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


def test_wide_layer_outputs() -> None:
    wide = WideLayer([4, 3], [5], num_dense=1, factor_dim=2, bias_init=-1.0, seed=1)
    out = wide(np.array([[1, 2]], np.int32), np.array([[3]], np.int32), np.array([[0.5]], np.float32))
    assert float(out["linear"][0]) == pytest.approx(-1.0)  # only the bias before training
    assert tuple(out["factors"].shape) == (1, 2, 2)
    # field 2's local id 2 is row 4 + 2 of the stacked table
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out["factors"][0, 1]), keras.ops.convert_to_numpy(wide.factors[6])
    )


def test_initialisers_are_deterministic_under_a_seed() -> None:
    a, b, c = model(), model(), WideDeepModel(SPEC.to_json(), hidden_units=(8, 4), seed=8).build_from_spec()
    for va, vb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert not np.array_equal(a.deep.embeddings.numpy(), c.deep.embeddings.numpy())


def test_model_save_load_round_trip(tmp_path) -> None:
    original = model(aux_heads=True)
    wide_opt, deep_opt = make_optimizers(OptimizerConfig())
    original.compile_training(get_loss("esdfm", LossConfig().params()), wide_opt, deep_opt)
    x = inputs()
    for step in range(3):  # move the weights away from their initial values
        original.train_step(
            (
                inputs(seed=step),
                {
                    "label": np.array([1, 0, 0, 1, 0], np.float32),
                    "attribution": np.array([0, 1, 1, 2, 1], np.int32),
                    "teacher": np.zeros(5, np.float32),
                },
            )
        )
    path = tmp_path / "model.keras"
    original.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, WideDeepModel) and restored.get_config() == original.get_config()
    for key, value in original(x).items():
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(restored(x)[key]), keras.ops.convert_to_numpy(value), rtol=1e-6
        )


def test_train_step_updates_wide_with_ftrl_and_deep_with_adam() -> None:
    m = model()
    wide_opt, deep_opt = make_optimizers(OptimizerConfig())
    m.compile_training(get_loss("pu", LossConfig().params()), wide_opt, deep_opt)
    wide_ids = {id(v) for v in m.wide_variables}
    assert wide_ids.isdisjoint(id(v) for v in m.deep_variables)
    assert len(m.wide_variables) + len(m.deep_variables) == len(m.trainable_variables)
    before = {v.path: v.numpy().copy() for v in m.trainable_variables}
    out = m.train_step(
        (
            inputs(),
            {
                "label": np.array([1, 0, 0, 1, 0], np.float32),
                "attribution": np.array([0, 1, 1, 2, 1], np.int32),
                "teacher": np.zeros(5, np.float32),
            },
        )
    )
    assert np.isfinite(float(out["loss"]))
    assert int(wide_opt.iterations.numpy()) == 1 and int(deep_opt.iterations.numpy()) == 1
    moved = {v.path for v in m.trainable_variables if not np.array_equal(before[v.path], v.numpy())}
    assert "wide_deep/wide/bias" in moved and "wide_deep/deep/embeddings" in moved


def test_ftrl_keeps_the_initial_factors() -> None:
    # Keras' FTRL derives weights from its linear slot; without the sync, rows outside the batch
    # would be zeroed by the first step and the wide FM could never learn.
    m = model()
    wide_opt, deep_opt = make_optimizers(OptimizerConfig())
    m.compile_training(get_loss("naive", LossConfig().params()), wide_opt, deep_opt)
    factors = m.wide.factors.numpy().copy()
    x = {"ids": np.zeros((2, 4), np.int32), "dense": np.zeros((2, 1), np.float32)}
    m.train_step(
        (
            x,
            {
                "label": np.array([1, 0], np.float32),
                "attribution": np.array([0, 1], np.int32),
                "teacher": np.zeros(2, np.float32),
            },
        )
    )
    untouched = [4, 5, 6]  # user rows the batch did not use
    np.testing.assert_allclose(m.wide.factors.numpy()[untouched], factors[untouched], rtol=1e-5, atol=1e-7)


def test_reset_rows_reinitialises_weights_and_optimizer_slots() -> None:
    m = model()
    wide_opt, deep_opt = make_optimizers(OptimizerConfig())
    m.compile_training(get_loss("naive", LossConfig().params()), wide_opt, deep_opt)
    x = {"ids": np.array([[3, 1, 0, 0]] * 4, np.int32), "dense": np.ones((4, 1), np.float32)}
    targets = {
        "label": np.array([1, 1, 1, 1], np.float32),
        "attribution": np.zeros(4, np.int32),
        "teacher": np.zeros(4, np.float32),
    }
    for _ in range(3):
        m.train_step((x, targets))
    row = 3  # user slot 3 (the user field starts at row 0)
    assert m.wide.linear.numpy()[row, 0] != 0.0
    m.reset_rows(np.array([row], np.int32), step=5)
    assert m.wide.linear.numpy()[row, 0] == 0.0
    assert np.abs(m.deep.embeddings.numpy()[row]).max() < 0.1
    index = deep_opt._get_variable_index(m.deep.embeddings)
    assert not deep_opt._momentums[index].numpy()[row].any() and not deep_opt._velocities[index].numpy()[row].any()
    w_index = wide_opt._get_variable_index(m.wide.linear)
    assert wide_opt._accumulators[w_index].numpy()[row, 0] == pytest.approx(wide_opt.initial_accumulator_value)
    # a step that does not use the row leaves the fresh values in place (FTRL's fixed point)
    fresh = m.wide.factors.numpy()[row].copy()
    m.train_step(({"ids": np.array([[5, 1, 0, 0]] * 4, np.int32), "dense": np.ones((4, 1), np.float32)}, targets))
    np.testing.assert_allclose(m.wide.factors.numpy()[row], fresh, rtol=1e-5, atol=1e-7)
