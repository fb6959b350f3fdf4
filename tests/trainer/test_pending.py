"""The estimate of the clicks still to come (trainer.losses.pending), fed by the samples' own times."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from trainer.losses.pending import PendingClicks
from trainer.samples import LATE_POSITIVE, MISSING_TIME, NEGATIVE, POSITIVE

W, H = 10 * 60_000, 24 * 3_600_000


def stream(hours: float, seed: int = 0, late_share: float = 0.2) -> dict[str, np.ndarray]:
    """A live stream's samples in emission order: impressions every 2 s for ``hours``, a share of them
    with a late click (log-uniform delay in (W, H]) that has arrived by the end, or not."""
    rng = np.random.default_rng(seed)
    end = hours * 3_600_000
    impressions = np.arange(0, end, 2000, dtype=np.float64)
    late = rng.random(len(impressions)) < late_share
    delays = np.exp(rng.uniform(math.log(W), math.log(H), len(impressions)))
    rows = [(t + W, t, t + W, MISSING_TIME, NEGATIVE) for t in impressions if t + W <= end]
    rows += [
        (t + d, t, t + d, d, LATE_POSITIVE)
        for t, d, is_late in zip(impressions, delays, late, strict=False)
        if is_late and t + d <= end
    ]
    rows.sort()
    table = np.array([r[1:] for r in rows], np.float64)
    return {
        "impression_time_ms": table[:, 0].astype(np.int64),
        "emit_time_ms": table[:, 1].astype(np.int64),
        "delay_ms": table[:, 2].astype(np.int64),
        "attribution": table[:, 3].astype(np.int32),
    }


def feed(pending: PendingClicks, samples: dict[str, np.ndarray], batch: int = 256) -> list[np.ndarray]:
    out = []
    for start in range(0, len(samples["attribution"]), batch):
        part = {k: v[start : start + batch] for k, v in samples.items()}
        out.append(pending.observe(part, part["attribution"]))
    return out


def test_arrived_fraction_follows_the_stream_age() -> None:
    for hours in (3.0, 12.0):
        pending = PendingClicks(H, max_weight=10.0)
        feed(pending, stream(hours))
        truth = math.log(hours * 3_600_000 / W) / math.log(H / W)
        assert abs(pending.arrived_fraction() - truth) < 0.05


def test_live_late_positives_weigh_one_over_the_arrived_fraction() -> None:
    pending = PendingClicks(H, max_weight=4.0)
    samples = stream(12.0)
    weights = np.concatenate(feed(pending, samples))
    late = samples["attribution"] == LATE_POSITIVE
    assert np.all(weights[~late] == 1.0)
    assert weights[late][-1] == np.float32(1.0 / pending.arrived_fraction())
    assert 1.0 < weights[late][-1] < 1.3
    assert np.all(weights[late] <= 4.0)  # capped early in the stream


def test_a_stream_older_than_the_horizon_is_plain_pu() -> None:
    pending = PendingClicks(H, max_weight=4.0)
    feed(pending, stream(30.0, late_share=0.05))
    assert pending.arrived_fraction() == 1.0


def test_samples_far_behind_the_stream_time_are_not_live() -> None:
    """Shuffled offline epochs: a LATE_POSITIVE emitted long before the stream time weighs 1."""
    pending = PendingClicks(H, max_weight=4.0)
    samples = stream(12.0)
    feed(pending, samples)
    late = np.flatnonzero(samples["attribution"] == LATE_POSITIVE)[:50]
    part = {k: v[late] for k, v in samples.items()}
    assert np.all(pending.observe(part, part["attribution"]) == 1.0)


def test_missing_times_weigh_one() -> None:
    pending = PendingClicks(H, max_weight=4.0)
    missing = np.full(3, MISSING_TIME, np.int64)
    times = {"impression_time_ms": missing, "emit_time_ms": missing, "delay_ms": missing}
    assert np.all(pending.observe(times, np.array([POSITIVE, NEGATIVE, LATE_POSITIVE], np.int32)) == 1.0)


def test_the_estimate_survives_a_checkpoint(tmp_path: Path) -> None:
    pending = PendingClicks(H, max_weight=4.0)
    feed(pending, stream(6.0))
    path = tf.train.Checkpoint(pending=pending).save(str(tmp_path / "ckpt"))
    restored = PendingClicks(H, max_weight=4.0)
    tf.train.Checkpoint(pending=restored).restore(path).assert_consumed()
    assert restored.to_json() == pending.to_json()
    assert restored.arrived_fraction() == pending.arrived_fraction()
    copied = PendingClicks(H, max_weight=4.0)
    copied.load_json(pending.to_json())
    assert copied.arrived_fraction() == pending.arrived_fraction()


def test_the_trainer_state_keeps_the_estimate_in_checkpoints_and_exports(tmp_path: Path) -> None:
    from synth import make_samples, online_split

    from trainer.config import TrainerConfig
    from trainer.export import export_state
    from trainer.fit import targets
    from trainer.samples import SampleTable, parse_sample
    from trainer.state import TrainerState

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
    assert 0.0 < state.pending.arrived_fraction() < 1.0 and sum(saved["late_counts"]) > 0  # type: ignore[arg-type]
    state.save_checkpoint(tmp_path / "ckpt")
    export_state(state, tmp_path / "export")
    for saved_in in ("ckpt", "export"):
        restored = TrainerState.warm_start(tmp_path / saved_in, config)
        assert restored.pending.to_json() == saved
        assert restored.step == state.step == -(-len(table) // 128)  # the step counter too
