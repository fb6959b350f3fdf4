"""The delay model inside a training state (trainer.losses.pending): saved with checkpoints and
exports, recorded as history by a shuffled fit, and handed by its export to the stream that starts
from it (the day-level hot start). The estimate itself is tested in test_delay_model.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from synth import make_samples, online_split, write_jsonl
from test_delay_model import TIME_KEYS, feed, stream

from trainer.bench.families import HORIZON_MS, HOUR
from trainer.config import TrainerConfig
from trainer.delay_model import DelayModel
from trainer.export import export_state
from trainer.fit import fit, targets
from trainer.losses.pending import PendingClicks
from trainer.samples import LATE_POSITIVE, SampleTable, parse_sample, read_samples
from trainer.state import TrainerState
from trainer.warm_start import warm_start


def test_the_estimate_survives_a_checkpoint(tmp_path: Path) -> None:
    pending = PendingClicks(HORIZON_MS, max_weight=4.0)
    feed(pending, stream(6.0, "uniform"))
    path = tf.train.Checkpoint(pending=pending).save(str(tmp_path / "ckpt"))
    restored = PendingClicks(HORIZON_MS, max_weight=4.0)
    tf.train.Checkpoint(pending=restored).restore(path).assert_consumed()
    assert restored.to_json() == pending.to_json()
    ages = np.array([1.0, 3.0, 6.0]) * HOUR
    np.testing.assert_array_equal(restored.arrived_fraction(ages), pending.arrived_fraction(ages))


def test_the_trainer_state_keeps_the_estimate_in_checkpoints_and_exports(tmp_path: Path) -> None:
    rows, truth = make_samples(600, late_fraction=0.6, ctr_logit=0.0, seed=4, spacing_ms=60_000)
    rows, _ = online_split(rows, truth, test_fraction=0.1)  # 9 h of a live stream
    table = SampleTable([parse_sample(r) for r in rows])
    config = TrainerConfig.load(None, {"fit.order": "stream"})
    state = TrainerState.create(config, table)
    prepared = state.prepare(table)
    for start in range(0, len(table), 128):
        batch = np.arange(start, min(start + 128, len(table)))
        state.train_on_batch(state.encode(prepared, batch), targets(table, batch, None))
    saved = state.pending.to_json()
    assert 0.0 < float(state.pending.arrived_fraction(5 * HOUR)) < 1.0 and sum(saved["stream_counts"]) > 0
    prefix = state.save_checkpoint(tmp_path / "ckpt")
    export_state(state, tmp_path / "export")
    resumed = TrainerState(config, state.spec)  # as the sidecar resumes its own checkpoint: the same stream
    resumed.restore_checkpoint(prefix)
    assert resumed.pending.to_json() == saved
    for saved_in in ("ckpt", "export"):
        # A warm start begins another stream: the counted delays become history, the position goes.
        restored = warm_start(tmp_path / saved_in, config)
        assert not np.isfinite(restored.pending.start_ms) and restored.pending.stream_counts.sum() == 0
        np.testing.assert_array_equal(restored.pending.history_counts, saved["stream_counts"])
        assert restored.step == state.step == -(-len(table) // 128)  # the step counter too


def _shifted(rows: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
    """The same samples ``offset`` ms later."""
    keys = ("impression_time_ms", "emit_time_ms", "label_time_ms")
    return [{**r, **{k: r[k] + offset for k in keys if r.get(k) is not None}} for r in rows]


@pytest.fixture(scope="module")
def day_level(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A shuffled fit over a complete previous day (the day-level hot start), and the stream after it."""
    directory = tmp_path_factory.mktemp("day")
    day, _ = make_samples(3000, late_fraction=0.5, ctr_logit=-0.5, seed=11, spacing_ms=int(24 * HOUR) // 3000)
    later, truth = make_samples(1500, late_fraction=0.5, ctr_logit=-0.5, seed=12, spacing_ms=int(12 * HOUR) // 1500)
    config = TrainerConfig.load(None, {"fit.epochs": 1, "model.hidden_units": [8]})
    fit([write_jsonl(directory / "day.jsonl", day)], config, export=directory / "day-export")
    online, _ = online_split(_shifted(later, int(24 * HOUR)), truth, test_fraction=0.01)
    return directory / "day-export", write_jsonl(directory / "stream.jsonl", online)


def test_a_shuffled_fit_records_its_delays_as_history(day_level: tuple[Path, Path]) -> None:
    export, _ = day_level
    state = warm_start(export, TrainerConfig.load(None, {}))
    assert state.pending.history_counts.sum() > 300 and state.pending.history_exposure.max() > 2900
    assert not np.isfinite(state.pending.start_ms)  # at no stream position: the next stream starts afresh
    # synth.py's late delays are log-uniform in (W, H]: F grows with the log of the age
    shares = state.pending.arrived_fraction(np.array([1.0, 12.0]) * HOUR)
    assert abs(shares[0] - np.log(6) / np.log(144)) < 0.08 and abs(shares[1] - np.log(72) / np.log(144)) < 0.08


def test_a_stream_warm_started_from_the_day_level_export_weighs_by_its_history(day_level: tuple[Path, Path]) -> None:
    export, stream_file = day_level
    config = TrainerConfig.load(None, {"fit.order": "stream", "loss.pending_max_weight": 8.0})
    state = warm_start(export, config)
    history = DelayModel(HORIZON_MS, max_weight=8.0, learn_from_stream=False)
    history.load_json(state.pending.to_json())
    table = SampleTable(read_samples([stream_file])[0])
    weights = []
    for start in range(0, len(table), 128):
        step_targets = targets(table, np.arange(start, min(start + 128, len(table))), None)
        weights.append(state.late_weights(step_targets))
    got = np.concatenate(weights)
    late = table.attributions == LATE_POSITIVE
    ages = table.times["emit_time_ms"][late] - table.times["impression_time_ms"].min()
    expected = 1.0 / np.maximum(history.arrived_fraction(ages), 1.0 / 8.0)
    assert np.abs(got[late] / expected - 1).mean() < 0.05  # the history's shape from the first sample on
    assert np.all(got[~late] == 1.0) and got[late].max() == 8.0


def test_shuffled_order_weighs_every_sample_one_and_stream_order_does_not() -> None:
    times = stream(6.0, "uniform")
    step_targets = {**{k: times[k] for k in TIME_KEYS}, "attribution": times["attribution"]}
    step_targets["label"] = (times["attribution"] != 1).astype(np.float32)
    table = SampleTable([parse_sample(r) for r in make_samples(50, seed=1)[0]])
    state = TrainerState.create(TrainerConfig.load(None, {}), table)
    state.set_order("shuffle")
    assert np.all(state.late_weights(step_targets) == 1.0)
    state.set_order("stream")
    assert state.late_weights(step_targets).max() > 1.0


@pytest.mark.parametrize(
    ("pending_on", "cold", "hot"), [("auto", False, True), ("late", False, False), ("negatives", True, True)]
)
def test_the_extra_late_weight_goes_onto_negatives_from_a_day_level_model_only(
    day_level: tuple[Path, Path], pending_on: str, cold: bool, hot: bool
) -> None:
    """``loss.pending_on: auto`` (the default) spreads the clicks still to come over NEGATIVEs by the
    model's click probability once a day-level hot start handed over its history, never in a cold
    stream (a young model's probabilities are no guide); ``late`` and ``negatives`` force either."""
    export, _ = day_level
    config = TrainerConfig.load(None, {"fit.order": "stream", "loss.pending_on": pending_on})
    table = SampleTable([parse_sample(r) for r in make_samples(50, seed=1)[0]])
    assert TrainerState.create(config, table).pending_on_negatives() is cold
    assert warm_start(export, config).pending_on_negatives() is hot
