"""features.frozen: the named fields keep their warm-start rows (and vocabulary) while the rest trains."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from common.errors import ConfigError
from trainer.config import TrainerConfig
from trainer.errors import TrainerError
from trainer.fit import fit, targets
from trainer.layers.wide import WideLayer, field_offsets
from trainer.samples import SampleTable, parse_sample, read_samples
from trainer.state import TrainerState
from trainer.warm_start import warm_start

FROZEN = ["user_id", "item_id"]


def base_rows(state: TrainerState, fields: list[str]) -> np.ndarray:
    spec = state.spec
    return np.concatenate(
        [
            np.arange(offset, offset + size)
            for name, offset, size in zip(spec.base_fields, spec.base_offsets, spec.base_sizes, strict=True)
            if name in fields
        ]
    )


def cross_rows(state: TrainerState, cross: tuple[str, str]) -> np.ndarray:
    spec = state.spec
    offsets = field_offsets(spec.cross_sizes)
    (index,) = [i for i, (a, b, _) in enumerate(spec.crosses) if (a, b) == cross]
    return np.arange(offsets[index], offsets[index] + spec.crosses[index][2])


def snapshot(state: TrainerState) -> dict[str, np.ndarray]:
    """Every variable's value, by path."""
    return {v.path: np.array(v.numpy()) for v in state.model.variables}


def per_id_tables(state: TrainerState) -> list[str]:
    return [variable.path for variable, _ in state.model.row_tables()]


def cross_table(state: TrainerState) -> str:
    (wide,) = [layer for layer in state.model.layers if isinstance(layer, WideLayer)]
    return str(wide.cross_linear.path)


def assert_frozen_and_trained(before: TrainerState, after: TrainerState, frozen: list[str], trained: list[str]) -> None:
    old, new = snapshot(before), snapshot(after)
    held, moving = base_rows(before, frozen), base_rows(before, trained)
    assert per_id_tables(before)
    for path in per_id_tables(before):
        np.testing.assert_array_equal(new[path][held], old[path][held], err_msg=path)  # bit for bit
        assert not np.array_equal(new[path][moving], old[path][moving]), f"{path}: the trained fields did not move"
    # (not every kernel: a two-tower model's item tower reads nothing but frozen zeros when item_id,
    # FTRL-trained from zero, is its only field)
    assert any(not np.array_equal(new[p], old[p]) for p in old if "kernel" in p)


@pytest.fixture(scope="module")
def online_file(data_dir: Path) -> Path:
    """A later stream: the day-level model's users and items, and as many new users."""
    from synth import make_samples, write_jsonl

    samples, _ = make_samples(impressions=1200, users=120, items=30, seed=7)
    return write_jsonl(data_dir / "online.jsonl", samples)


@pytest.mark.parametrize("order", ["stream", "shuffle"])
def test_a_fit_from_the_day_level_export_keeps_the_frozen_rows_bit_for_bit(
    exported: Path, online_file: Path, tmp_path: Path, order: str
) -> None:
    # shuffle ends with the Adam average swapped in; AdamW decays every weight; FTRL re-derives its own
    config = TrainerConfig.load(
        None,
        {"features.frozen": FROZEN, "fit.order": order, "fit.epochs": 1, "fit.batch_size": 128,
         "optimizer.adam_weight_decay": 0.01},
    )
    fit([online_file], config, export=tmp_path / "online", warm_start=exported)
    day, online = warm_start(exported, config), warm_start(tmp_path / "online", config)
    assert_frozen_and_trained(day, online, FROZEN, ["position", "context.page", "sparse.city"])
    both, one = cross_rows(day, ("user_id", "item_id")), cross_rows(day, ("item_id", "position"))
    cross = cross_table(day)
    np.testing.assert_array_equal(snapshot(online)[cross][both], snapshot(day)[cross][both])
    assert not np.array_equal(snapshot(online)[cross][one], snapshot(day)[cross][one])
    # the frozen vocabularies admitted none of the new users: they read the day-level OOV row
    assert online.vocabs["user_id"].items() == day.vocabs["user_id"].items()


def test_a_stream_from_a_checkpoint_keeps_them_step_by_step(data_dir: Path, exported: Path, online_file: Path) -> None:
    """The train step fit and the sidecar share, from a checkpoint (its optimizer slots restored)."""
    config = TrainerConfig.load(None, {"features.frozen": ["user_id"], "fit.batch_size": 128})
    state = warm_start(data_dir / "ckpt-pu", config)
    before = snapshot(state)
    table = SampleTable(read_samples([online_file])[0])
    prepared = state.prepare(table)
    for start in range(0, 1024, 128):
        rows = np.arange(start, start + 128)
        state.train_on_batch(state.encode(prepared, rows), targets(table, rows, None))
    after = snapshot(state)
    held = base_rows(state, ["user_id"])
    for path in per_id_tables(state):
        np.testing.assert_array_equal(after[path][held], before[path][held], err_msg=path)
    moving = base_rows(state, ["item_id"])
    assert all(not np.array_equal(after[p][moving], before[p][moving]) for p in per_id_tables(state))


@pytest.mark.parametrize("model", ["wide_deep", "dual_dnn", "two_tower"])
def test_frozen_without_a_warm_start_stays_at_its_initialisation_and_says_so(
    model: str, caplog: pytest.LogCaptureFixture
) -> None:
    from synth import make_samples

    rows, _ = make_samples(600, users=40, items=20, seed=3)
    table = SampleTable([parse_sample(r) for r in rows])
    config = TrainerConfig.load(None, {"model.name": model, "features.frozen": ["item_id"], "fit.batch_size": 128})
    state = TrainerState.create(config, table)
    initial = TrainerState.create(config, table)  # the same seed: the same initial weights
    prepared = state.prepare(table)
    with caplog.at_level(logging.INFO, logger="trainer"):
        for start in range(0, 512, 128):
            batch = np.arange(start, start + 128)
            state.train_on_batch(state.encode(prepared, batch), targets(table, batch, None))
    said = [r.getMessage() for r in caplog.records if "features.frozen" in r.getMessage()]
    assert said == ["features.frozen: item_id stay at their initialisation (no warm start to keep the values of)"]
    assert_frozen_and_trained(initial, state, ["item_id"], ["user_id"])


def test_an_unknown_frozen_field_is_one_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        TrainerConfig.load(None, {"features.frozen": ["user_id", "usr_id"]})
    message = str(caught.value)
    assert "\n" not in message and "'usr_id'" in message and "features.frozen" in message
    with pytest.raises(ConfigError, match=r"cannot freeze 'dense\.u_ctr_7d'"):  # no embeddings to keep
        TrainerConfig.load(None, {"features.frozen": ["dense.u_ctr_7d"]})


def test_a_frozen_field_the_model_lacks_is_refused(exported: Path) -> None:
    config = TrainerConfig.load(None, {"features.frozen": ["context.pgae"]})  # the form of a field: valid
    with pytest.raises(TrainerError, match=r"^features.frozen names context.pgae, which the model has no "):
        warm_start(exported, config)


def test_frozen_is_the_runs_setting_not_the_saved_models(exported: Path) -> None:
    state = warm_start(exported, TrainerConfig.load(None, {"features.frozen": FROZEN}))
    assert state.config.features.frozen == tuple(FROZEN) and state.frozen.rows > 0
    assert warm_start(exported, TrainerConfig()).frozen.tables == []
    assert tf.reduce_all(tf.equal(state.frozen.tables[0][1], base_rows(state, FROZEN)))
