"""The delay model and the stream weights (trainer.delay_model), pure numpy: the weight of a sample
depends on its own times and the delay model, not on how partitions interleave; the delay shape is
learnt (history, or the stream's censored delays), not assumed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer.bench.families import HORIZON_MS, HOUR, WINDOW_MS, arrived_share, late_delays
from trainer.delay_model import MAX_LAG_SHARE, DelayModel

NEGATIVE, LATE_POSITIVE, POSITIVE = 1, 2, 0
T0 = 1_700_000_000_000.0
TIME_KEYS = ("impression_time_ms", "emit_time_ms", "delay_ms")


def stream(
    hours: float,
    family: str = "log-uniform",
    seed: int = 0,
    click: float = 0.3,
    late_share: float = 0.5,
    gap_ms: float = 1500.0,
    start: float = T0,
    complete: bool = False,
) -> dict[str, np.ndarray]:
    """The samples of impressions every ``gap_ms`` for ``hours``, in emission order (the join's rules:
    POSITIVE within W, else NEGATIVE at t + W and a LATE_POSITIVE at t + d if d <= H); cut where a live
    trainer stands at the last impression unless ``complete`` (every label, however late)."""
    rng = np.random.default_rng(seed)
    t = start + np.arange(0.0, hours * HOUR, gap_ms)
    clicked = rng.random(len(t)) < click
    late = clicked & (rng.random(len(t)) < late_share)
    delay = np.where(late, late_delays(family, rng, len(t)), rng.uniform(1000.0, WINDOW_MS, len(t)))
    index = np.arange(len(t))
    positive = clicked & ~late
    attributed = late & (delay <= HORIZON_MS)
    parts = [  # (emit, impression, delay, attribution, impression index) per kind of sample
        (t[positive] + delay[positive], t[positive], delay[positive], POSITIVE, index[positive]),
        (t[~positive] + WINDOW_MS, t[~positive], np.full(int((~positive).sum()), -1.0), NEGATIVE, index[~positive]),
        (t[attributed] + delay[attributed], t[attributed], delay[attributed], LATE_POSITIVE, index[attributed]),
    ]
    emit, impression, delays, ids = (np.concatenate([p[k] for p in parts]) for k in (0, 1, 2, 4))
    attribution = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])
    keep = np.ones(len(emit), bool) if complete else emit <= t[-1]
    order = np.argsort(emit[keep], kind="stable")
    return {
        "impression_time_ms": impression[keep][order].astype(np.int64),
        "emit_time_ms": emit[keep][order].astype(np.int64),
        "delay_ms": delays[keep][order].astype(np.int64),
        "attribution": attribution[keep][order].astype(np.int32),
        "id": ids[keep][order] * 4 + attribution[keep][order],  # one id per sample
        "partition": ids[keep][order] % 4,  # keyed by impression, as the join produces them
    }


def take(samples: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in samples.items()}


def feed(
    model: DelayModel, samples: dict[str, np.ndarray], batch: int = 256, partitions: bool = True
) -> dict[int, float]:
    """The weight of each sample (by id), fed in the given order in batches, with each one's partition
    (as the sidecar reads them) or without (``partitions=False``: one stream)."""
    out: dict[int, float] = {}
    for start in range(0, len(samples["id"]), batch):
        part = take(samples, np.arange(start, min(start + batch, len(samples["id"]))))
        weights = model.observe(
            {k: part[k] for k in TIME_KEYS}, part["attribution"], part["partition"] if partitions else None
        )
        out.update(zip(part["id"].tolist(), weights.tolist(), strict=True))
    return out


def backlog(samples: dict[str, np.ndarray], chunk_hours: float, first: int) -> dict[str, np.ndarray]:
    """The same samples as a consumer reads a backlog over 4 partitions: each partition in emission
    order, the partitions taken in turn a chunk of ``chunk_hours`` of stream time at a time, starting
    with partition ``first``."""
    emit = samples["emit_time_ms"]
    chunk = np.floor((emit - emit.min()) / (chunk_hours * HOUR)).astype(np.int64)
    turn = (samples["partition"] - first) % 4
    order = np.lexsort((np.arange(len(emit)), turn, chunk))  # by chunk, then partition turn, then emission
    return take(samples, order)


def history_model(family: str, **kwargs: object) -> DelayModel:
    """A model whose history is the previous day's complete samples (what a shuffled fit records)."""
    model = DelayModel(HORIZON_MS, max_weight=8.0, **kwargs)  # type: ignore[arg-type]
    day = stream(24.0, family, seed=99, start=T0 - 24 * HOUR, complete=True)
    model.record_history({k: day[k] for k in TIME_KEYS}, day["attribution"])
    return model


@pytest.mark.parametrize("family", ["log-uniform", "uniform", "exponential", "weibull", "spike"])
def test_matured_history_gives_the_delay_shape(family: str) -> None:
    model = history_model(family)
    ages = np.array([0.5, 1, 3, 6, 12, 20]) * HOUR
    assert np.abs(model.arrived_fraction(ages) - arrived_share(family, ages)).max() < 0.03


def test_weights_do_not_depend_on_how_partitions_interleave() -> None:
    samples = stream(12.0, "uniform", seed=1)
    late = samples["attribution"] == LATE_POSITIVE
    for learn in (False, True):
        in_order = feed(history_model("uniform", learn_from_stream=learn), samples)
        for first in (0, 3):
            read = feed(history_model("uniform", learn_from_stream=learn), backlog(samples, 2.5, first))
            ids = samples["id"][late].tolist()
            got, want = np.array([read[i] for i in ids]), np.array([in_order[i] for i in ids])
            # The stream start is the earliest impression seen: every partition begins with the
            # stream, so it is known to within seconds from the first batch on.
            if learn:  # what each interleaving has seen of the stream's own delays differs a little
                assert np.abs(got / want - 1).mean() < 0.01
            else:
                np.testing.assert_allclose(got, want, rtol=2e-3)
        assert all(in_order[i] == 1.0 for i in samples["id"][~late].tolist())


def test_given_the_stream_start_the_weights_are_exactly_equal() -> None:
    """After a restart (the state from a checkpoint), any interleaving of the rest gets the same
    weights, sample by sample."""
    samples = stream(12.0, "uniform", seed=2)
    started = samples["emit_time_ms"] <= samples["emit_time_ms"].min() + 20 * 60_000
    checkpoint = history_model("uniform", learn_from_stream=False)
    feed(checkpoint, take(samples, np.flatnonzero(started)))
    rest = take(samples, np.flatnonzero(~started))
    weights = []
    for order in (rest, backlog(rest, 2.0, 1), backlog(rest, 0.7, 2)):
        model = DelayModel(HORIZON_MS, max_weight=8.0, learn_from_stream=False)
        model.load_json(checkpoint.to_json())
        weights.append(feed(model, order, batch=100))
    assert weights[0] == weights[1] == weights[2]


def test_a_sample_weighs_one_over_the_share_arrived_by_its_own_age() -> None:
    samples = stream(12.0, "uniform", seed=3)
    model = history_model("uniform", learn_from_stream=False)
    weights = feed(model, samples)
    late = np.flatnonzero(samples["attribution"] == LATE_POSITIVE)
    start = samples["impression_time_ms"].min()
    ages = samples["emit_time_ms"][late] - start
    expected = 1.0 / np.maximum(arrived_share("uniform", ages), 1.0 / 8.0)
    got = np.array([weights[i] for i in samples["id"][late].tolist()])
    assert np.abs(got / expected - 1).max() < 0.08
    assert got.max() == 8.0 and got.min() < 1.8  # capped early; about 1/F(12 h) = 1.68 at the end


@pytest.mark.parametrize("family", ["log-uniform", "uniform", "exponential", "weibull", "spike"])
def test_a_cold_stream_learns_the_shape_from_its_own_censored_delays(family: str) -> None:
    """No history: the delays not observable yet are extrapolated, by default as the mean of a censored
    gamma fit (right on decaying shapes, too heavy a tail on uniform ones) and the continued log-density
    (right on log-uniform delays only: 20-25% too heavy a tail on exponential ones, too light on
    uniform ones)."""
    samples = stream(12.0, family, seed=4)
    ages = np.array([8.0, 10.0, 12.0]) * HOUR
    truth = arrived_share(family, ages)
    blend, flat = DelayModel(HORIZON_MS), DelayModel(HORIZON_MS, tail="log-flat")
    feed(blend, samples)
    feed(flat, samples)
    assert np.abs(truth / blend.arrived_fraction(ages) - 1).max() < 0.17
    if family == "exponential":
        assert (truth / flat.arrived_fraction(ages) - 1).min() > 0.18


@pytest.mark.parametrize("family", ["log-uniform", "uniform"])
def test_a_cold_backlog_over_partitions_weighs_as_the_caught_up_stream(family: str) -> None:
    """Partitions read four hours apart: each partition is a censored stream of its own (its counts and
    exposures at its own position), so the last hours of a backlog weigh as the caught-up stream's
    (mean ratio 0.96-1.00 here). Read as one stream, the counts had to stop at the frontier minus the
    lag between partitions, and the uniform stream's last six hours came out 17-20% low."""
    samples = stream(12.0, family, seed=5)
    late = samples["attribution"] == LATE_POSITIVE
    recent = late & (samples["emit_time_ms"] > samples["emit_time_ms"].max() - 6 * HOUR)
    ids = samples["id"][recent].tolist()
    caught_up = DelayModel(HORIZON_MS)
    want = feed(caught_up, samples, partitions=False)
    for first in (0, 2):
        behind = DelayModel(HORIZON_MS)
        got = feed(behind, backlog(samples, 4.0, first))
        assert behind.lag_ms < 60_000 and caught_up.lag_ms < 60_000  # no lag inside a partition
        assert abs(np.mean([got[i] / want[i] for i in ids]) - 1) < 0.05
    one_stream = DelayModel(HORIZON_MS)
    feed(one_stream, backlog(samples, 4.0, 0), partitions=False)
    assert 3.0 * HOUR < one_stream.lag_ms < 4.0 * HOUR  # without partitions: the lag between them


def test_the_history_keeps_its_shape_when_the_stream_clicks_more() -> None:
    """The stream sets the level of the history's rates, not its shape: a stream with twice the
    click rate gets the same F."""
    model = history_model("uniform")
    before = model.arrived_fraction(np.array([3.0, 12.0]) * HOUR)
    feed(model, stream(12.0, "uniform", seed=6, click=0.6))
    after = model.arrived_fraction(np.array([3.0, 12.0]) * HOUR)
    assert np.abs(after - before).max() < 0.03


def test_a_stream_older_than_the_horizon_is_plain_pu() -> None:
    samples = stream(30.0, "log-uniform", seed=7, late_share=0.1, gap_ms=4000.0)
    model = DelayModel(HORIZON_MS)
    weights = feed(model, samples)
    late = samples["attribution"] == LATE_POSITIVE
    after = late & (samples["emit_time_ms"] >= samples["impression_time_ms"].min() + HORIZON_MS)
    assert after.any() and all(weights[i] == 1.0 for i in samples["id"][after].tolist())
    assert model.matured > 0  # the impressions older than H behind the frontier: every delay exposed


def test_shuffled_epochs_weigh_every_sample_one_and_learn_nothing() -> None:
    samples = stream(6.0, seed=8)
    model = DelayModel(HORIZON_MS)
    model.set_stream(False)
    assert set(feed(model, samples).values()) == {1.0}
    assert not math.isfinite(model.start_ms) and model.stream_counts.sum() == 0


def test_missing_times_weigh_one() -> None:
    model = DelayModel(HORIZON_MS)
    missing = np.full(3, -1, np.int64)
    times = {"impression_time_ms": missing, "emit_time_ms": missing, "delay_ms": missing}
    assert np.all(model.observe(times, np.array([POSITIVE, NEGATIVE, LATE_POSITIVE], np.int32)) == 1.0)


def test_one_stray_old_sample_does_not_blind_the_estimate() -> None:
    samples = stream(8.0, seed=9)
    model = DelayModel(HORIZON_MS)
    feed(model, take(samples, np.arange(len(samples["id"]) // 2)))
    stray = {k: np.array([samples["emit_time_ms"][0] - 30 * HOUR]) for k in TIME_KEYS}
    model.observe(stray, np.array([NEGATIVE], np.int32))
    assert model.lag_ms == MAX_LAG_SHARE * HORIZON_MS


def test_the_state_round_trips_through_json_and_a_replaced_state_continues_the_stream() -> None:
    samples = stream(8.0, "weibull", seed=10)
    model = history_model("weibull")
    feed(model, samples)
    copy = DelayModel(HORIZON_MS, max_weight=8.0)
    copy.load_json(model.to_json())
    ages = np.array([1.0, 5.0, 8.0]) * HOUR
    assert copy.to_json() == model.to_json()
    np.testing.assert_array_equal(copy.arrived_fraction(ages), model.arrived_fraction(ages))
    replaced = history_model("weibull")
    replaced.continue_stream(model)
    assert replaced.start_ms == model.start_ms and replaced.frontier_ms == model.frontier_ms
    old_format = DelayModel(HORIZON_MS)
    old_format.load_json({"start_ms": 0.0, "stream_ms": 1.0, "window_ms": 2.0, "late_counts": [0.0] * 48})
    assert not math.isfinite(old_format.start_ms)  # an earlier format starts afresh


def test_a_state_saved_before_partitions_goes_on_as_partition_zero() -> None:
    """Format 2 (one stream: the position at the top level) loads as partition 0, history and counts kept."""
    samples = stream(8.0, "weibull", seed=11)
    model = history_model("weibull")
    feed(model, samples, partitions=False)
    saved = model.to_json()
    (part,) = saved.pop("partitions").values()
    format_2 = {**saved, **part, "format": 2}
    restored = DelayModel(HORIZON_MS, max_weight=8.0)
    restored.load_json(format_2)
    assert restored.to_json() == model.to_json()


@pytest.mark.parametrize("family", ["log-uniform", "uniform", "exponential", "weibull", "spike"])
def test_with_history_the_weighted_undo_terms_balance_the_fake_negatives(family: str) -> None:
    """The weights' premise, per family: in a 12 h stream started from the previous day's history, the
    weighted LATE_POSITIVEs emitted equal the fake NEGATIVEs emitted (of impressions whose click comes
    within H), over the whole stream (uniform delays: from 6 h on; before, F < 1 / cap). Clicks inside
    the window counted as late delays, or F measured from the fake negative's emission instead of the
    impression, would break it, most on `spike` (late clicks 4 min after their fake negative)."""
    full = stream(12.0, family, seed=11, complete=True)
    clicked_late = np.unique(full["id"][full["attribution"] == LATE_POSITIVE] // 4)
    samples = take(full, np.flatnonzero(full["emit_time_ms"] <= full["impression_time_ms"].max()))
    weights = feed(history_model(family), samples)
    since = 6 * HOUR if family == "uniform" else 0.0
    counted = samples["emit_time_ms"] >= samples["impression_time_ms"].min() + since
    late = counted & (samples["attribution"] == LATE_POSITIVE)
    fake = counted & (samples["attribution"] == NEGATIVE) & np.isin(samples["id"] // 4, clicked_late)
    weighted = sum(weights[i] for i in samples["id"][late].tolist())
    assert 0.96 < weighted / fake.sum() < 1.04
