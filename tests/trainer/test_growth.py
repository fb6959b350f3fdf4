"""Growable, bounded memory: the model's tables follow the vocabularies' capacities within a budget."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from synth import make_samples

from common.errors import ConfigError
from trainer.config import TrainerConfig
from trainer.errors import TrainerError
from trainer.export import export_state
from trainer.features import EncodedBatch, FeatureSpec, serving_inputs
from trainer.fit import targets
from trainer.growth import relocate
from trainer.optim import optimizer_slots
from trainer.samples import SampleTable, parse_sample
from trainer.state import TrainerState
from trainer.warm_start import checkpointed_state, warm_start

FIELDS = ("user_id", "item_id")


def config(budget_mb: float, model: str = "wide_deep", **vocab: object) -> TrainerConfig:
    return TrainerConfig.load(None, {
        "model.name": model, "features.include": FIELDS, "features.crosses": [], "fit.batch_size": 64,
        "features.vocab.memory_budget_mb": budget_mb, "features.vocab.capacity": 16,
        "features.vocab.admit_after": 1, **{f"features.vocab.{k}": v for k, v in vocab.items()},
    })


def table(users: int, impressions: int, seed: int = 1, prefix: str = "") -> SampleTable:
    """Generated samples; ``prefix`` makes their user ids new ones."""
    samples, _ = make_samples(impressions=impressions, users=users, items=20, seed=seed)
    return SampleTable([parse_sample({**s, "user_id": prefix + s["user_id"]}) for s in samples])


def train(state: TrainerState, data: SampleTable, batch: int = 64) -> None:
    prepared = state.prepare(data)
    for start in range(0, len(data), batch):
        rows = np.arange(start, min(start + batch, len(data)))
        state.train_on_batch(state.encode(prepared, rows), targets(data, rows, None))


def field_rows(spec: FeatureSpec, field: str) -> slice:
    """The global rows of a tracked field in the stacked tables."""
    index = [f for f, _ in spec.tracked].index(field)
    return slice(spec.base_offsets[index], spec.base_offsets[index] + spec.tracked[index][1])


def table_bytes(state: TrainerState) -> int:
    """What the per-ID tables and their optimizer slots hold now (bytes)."""
    model = state.model
    wide = {id(v) for v in model.wide_variables}
    total = 0
    for variable, _ in model.row_tables():
        optimizer = model.wide_optimizer if id(variable) in wide else model.deep_optimizer
        for held in [variable, *(slot for slot, _ in optimizer_slots(optimizer, variable))]:
            total += int(np.prod(held.shape)) * 4
    return total


@pytest.mark.parametrize("model", ["wide_deep", "dual_dnn", "two_tower"])
def test_a_grown_model_scores_and_trains_as_before(model: str) -> None:
    """Growth copies every value and optimizer slot: the grown model's logits are the old model's,
    bit for bit, and so are the next training step's."""
    cfg = config(4.0, model)
    first = table(users=12, impressions=300)
    state = TrainerState.create(cfg, first)
    assert dict(state.spec.tracked) == {"user_id": 16, "item_id": 16}
    train(state, first)
    reference = state.encoder.peek(state.prepare(first), np.arange(len(first)))
    before = state.logits(reference)
    old_rows = [v.numpy()[: state.spec.base_rows] for v, _ in state.model.row_tables()]
    grown = table(users=40, impressions=400, seed=3)  # 40 users: user_id doubles twice
    batch = state.encode(state.prepare(grown), np.arange(len(grown)))
    assert dict(state.spec.tracked) == {"user_id": 64, "item_id": 32}
    np.testing.assert_array_equal(state.logits(reference), before)
    offsets = state.spec.base_offsets
    for (variable, _), old in zip(state.model.row_tables(), old_rows, strict=True):
        values = variable.numpy()
        np.testing.assert_array_equal(values[offsets[0] : offsets[0] + 16], old[:16])  # user_id's old rows
        np.testing.assert_array_equal(values[offsets[1] : offsets[1] + 16], old[16:32])  # item_id's
    state.train_on_batch(batch, targets(grown, np.arange(len(grown)), None))
    assert np.isfinite(state.logits(reference)).all()


def test_growth_under_the_budget_then_bounded_on_a_stream_of_new_ids(tmp_path: Path) -> None:
    """Through real train steps, ever new users: user_id grows while the budget has room, then
    displaces its least recently seen IDs; the tables never hold more than the budget counts, and the
    state checkpoints, restores and exports at its grown size."""
    cfg = config(0.25, admit_after=2)
    state = TrainerState.create(cfg, table(users=10, impressions=200))
    budget = state.vocabs.budget
    assert budget is not None
    capacities = []
    for hour in range(6):  # 150 new users an "hour", each seen 4 times on average
        data = table(users=150, impressions=600, seed=10 + hour, prefix=f"h{hour}-")
        train(state, data)
        capacities.append(state.vocabs.capacities()["user_id"])
        assert state.vocabs.held_bytes() <= budget.total_bytes
        assert table_bytes(state) <= sum(c * budget.row_bytes[f] for f, c in state.vocabs.capacities().items())
        assert dict(state.spec.tracked) == state.vocabs.capacities()
    users = state.vocabs["user_id"]
    assert capacities[0] > 16 and capacities[-1] == max(capacities) and users.displaced > 0
    assert len(users) < users.capacity and len(users.pending_stats()[0]) <= max(users.capacity, 1024) * 1.25

    prefix = state.save_checkpoint(tmp_path / "ckpt")
    restored = checkpointed_state(tmp_path / "ckpt", cfg)
    restored.restore_checkpoint(prefix)
    assert restored.vocabs.budget == budget and restored.vocabs.capacities() == state.vocabs.capacities()
    probe = table(users=150, impressions=50, seed=15, prefix="h5-")
    rows = np.arange(len(probe))
    expected = state.logits(state.encoder.peek(state.prepare(probe), rows))
    np.testing.assert_array_equal(restored.logits(restored.encoder.peek(restored.prepare(probe), rows)), expected)
    export = export_state(state, tmp_path / "export")
    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    served = serve(**{k: tf.constant(v) for k, v in serving_inputs(state.spec, probe).items()})["probability"]
    np.testing.assert_allclose(served.numpy(), tf.sigmoid(expected).numpy(), rtol=1e-5, atol=1e-7)


def test_a_budget_smaller_than_the_start_is_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape("memory_budget_mb is 0.01 MB, but the 2 tracked fields start")):
        TrainerState.create(config(0.01, capacity=1024), table(users=10, impressions=100))


def test_resets_move_with_the_layout() -> None:
    old = FeatureSpec(tracked=(("user_id", 16), ("item_id", 16)), hashed=(("position", 8),), crosses=(), dense=())
    new = FeatureSpec(tracked=(("user_id", 32), ("item_id", 16)), hashed=(("position", 8),), crosses=(), dense=())
    batch = EncodedBatch(np.zeros((1, 3), np.int32), np.zeros((1, 0), np.float32), np.array([3, 16 + 5], np.int32))
    assert relocate(batch, old, new).resets.tolist() == [3, 32 + 5]


def test_growth_refuses_a_model_whose_other_variables_change() -> None:
    from trainer.growth import copy_model

    cfg = config(4.0)
    small = TrainerState.create(cfg, table(users=10, impressions=100))
    other = TrainerState.create(cfg.model_copy(update={"model": cfg.model.model_copy(update={"hidden_units": (8,)})}),
                                table(users=10, impressions=100))
    with pytest.raises(TrainerError, match="cannot grow the model"):
        copy_model(small.model, other.model, small.spec, other.spec)


def test_frozen_rows_stay_held_where_growth_moves_them(tmp_path: Path) -> None:
    """features.frozen with a budget: user_id grows ahead of the frozen item_id, whose rows move in
    the stacked tables and stay bit for bit their warm-start values through the next steps."""
    cfg = config(4.0)
    state = TrainerState.create(cfg, table(users=12, impressions=300))
    train(state, table(users=12, impressions=300))
    export = export_state(state, tmp_path / "day")
    frozen_cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"frozen": ("item_id",)})})
    online = warm_start(export, frozen_cfg)
    item_rows = field_rows(online.spec, "item_id")
    held = [v.numpy()[item_rows] for v, _ in online.model.row_tables()]
    train(online, table(users=40, impressions=400, seed=5))  # 40 users: user_id grows, item_id moves
    assert dict(online.spec.tracked)["user_id"] > 16
    moved = field_rows(online.spec, "item_id")
    assert moved != item_rows
    for (variable, _), before in zip(online.model.row_tables(), held, strict=True):
        np.testing.assert_array_equal(variable.numpy()[moved], before, err_msg=variable.path)


def test_the_soak_bench_runs_and_reports(tmp_path: Path) -> None:
    """``python -m trainer.bench.vocab_soak`` with tiny arguments: the report's fields, the budget held
    (no timing is asserted: the RSS figure is the bench's, on a quiet machine)."""
    from trainer.bench import vocab_soak

    out = tmp_path / "soak.json"
    argv = ["--ids-per-hour", "4000", "--hours", "3", "--budget-mb", "4", "--batch-size", "256", "--json", str(out)]
    assert vocab_soak.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["finished"] == "hours" and report["samples"][-1]["simulated_hours"] >= 3
    last = report["samples"][-1]
    assert last["new_ids"] >= 11_000 and last["budget_held_mb"] <= 4.0
    assert last["fields"]["user_id"]["displaced"] > 0  # the budget was reached and held
    assert {"rss_mb", "rss_growth_mb", "table_mb"} <= set(last)
    assert vocab_soak.main(["--budget-mb", "0.5"]) == 2  # smaller than the fields' start: one line, exit 2
