"""The golden cases of docs/join.md, one by one, on the join core (state serialized at every step)."""

from __future__ import annotations

import pytest

from jobs.config import TaskConfig
from jobs.core import (
    WATERMARK_END,
    WATERMARK_START,
    Event,
    RequestState,
    SampleJoin,
)
from jobs.core.local import LocalJoinRunner
from jobs.runtime.state_bytes import BytesStore, state_from_bytes, state_to_bytes
from tests.jobs.core.helpers import (
    HOUR,
    MIN,
    OOO,
    SEC,
    T0,
    H,
    S,
    W,
    drain,
    imp,
    join_config,
    lab,
    replay,
    snap,
)

SAMPLE_FIELDS = [
    "sample_id", "task", "request_id", "impression_id", "user_id", "item_id", "position", "context",
    "impression_time_ms", "label", "attribution", "label_time_ms", "delay_ms", "emit_time_ms", "sparse",
    "dense", "has_snapshot",
]


def expected_sample(attribution: str, *, t_l: int | None = None, has_snapshot: bool = True, iid: str = "i1",
                    rid: str = "r1", task: str = "click", t_i: int = T0, window: int = W,
                    sparse: dict[str, str] | None = None, dense: dict[str, float] | None = None,
                    user: str = "u1", item: str = "v1") -> dict[str, object]:
    return {
        "sample_id": f"{iid}:{task}:{attribution}",
        "task": task,
        "request_id": rid,
        "impression_id": iid,
        "user_id": user,
        "item_id": item,
        "position": 0,
        "context": {"page": "feed"},
        "impression_time_ms": t_i,
        "label": 0 if attribution == "NEGATIVE" else 1,
        "attribution": attribution,
        "label_time_ms": t_l,
        "delay_ms": None if t_l is None else t_l - t_i,
        "emit_time_ms": t_i + window if t_l is None else t_l,
        "sparse": ({"city": "bj"} if sparse is None else sparse) if has_snapshot else {},
        "dense": ({"u_ctr_7d": 0.031} if dense is None else dense) if has_snapshot else {},
        "has_snapshot": has_snapshot,
    }


def unmatched(reason: str, t_l: int, iid: str = "i1", rid: str = "r1", label_type: str = "click",
              value: float = 1.0) -> dict[str, object]:
    return {"request_id": rid, "impression_id": iid, "label_type": label_type, "event_time_ms": t_l,
            "value": value, "reason": reason}


def test_sample_json_has_exactly_the_contract_fields() -> None:
    r = replay([imp("r1", "i1", T0), snap("r1", T0), lab("r1", "i1", T0 + 30 * SEC)])
    assert len(r.samples) == 1
    assert list(r.samples[0]) == SAMPLE_FIELDS
    assert list(r.runner.samples[0].to_json()) == SAMPLE_FIELDS


def test_positive_within_window() -> None:
    r = replay([imp("r1", "i1", T0), snap("r1", T0), lab("r1", "i1", T0 + 30 * SEC)])
    assert r.samples == [expected_sample("POSITIVE", t_l=T0 + 30 * SEC)]
    assert r.unmatched == []


def test_positive_is_emitted_when_the_label_is_joined_not_at_the_window() -> None:
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    first: list[Event] = [imp("r1", "i1", T0), snap("r1", T0), lab("r1", "i1", T0 + 40 * SEC)]
    for e in first:
        runner.process(e)
    samples, _ = drain(runner)
    assert [s["attribution"] for s in samples] == ["POSITIVE"]
    runner.finish()
    assert drain(runner) == ([], [])  # no NEGATIVE follows


def test_negative_when_no_label_by_the_window() -> None:
    r = replay([imp("r1", "i1", T0), snap("r1", T0)])
    assert r.samples == [expected_sample("NEGATIVE")]


def test_negative_is_emitted_when_the_watermark_passes_t_i_plus_w() -> None:
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    runner.process(imp("r1", "i1", T0))
    runner.process(snap("r1", T0))
    # watermark = max event time - OOO - 1: one ms short of t_i + W ...
    runner.process(imp("r2", "other", T0 + W + OOO))
    assert runner.watermark == T0 + W - 1
    assert [s["sample_id"] for s in drain(runner)[0]] == []
    # ... and at t_i + W the NEGATIVE goes out
    runner.process(imp("r2", "other2", T0 + W + OOO + 1))
    assert runner.watermark == T0 + W
    assert [s["sample_id"] for s in drain(runner)[0]] == ["i1:click:NEGATIVE"]


def test_negative_then_late_positive_with_identical_features() -> None:
    r = replay([imp("r1", "i1", T0), snap("r1", T0), imp("r9", "x", T0 + 20 * MIN), lab("r1", "i1", T0 + HOUR)])
    mine = [s for s in r.samples if s["impression_id"] == "i1"]
    assert mine == [expected_sample("NEGATIVE"), expected_sample("LATE_POSITIVE", t_l=T0 + HOUR)]
    neg, late = mine
    assert (neg["sparse"], neg["dense"], neg["has_snapshot"]) == (late["sparse"], late["dense"], late["has_snapshot"])


def test_late_label_arriving_before_the_negative_is_due_gives_negative_and_late_positive() -> None:
    # delay W + 2 s, arriving while the watermark is still below t_i + W (within the out-of-orderness)
    t_l = T0 + W + 2 * SEC
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    stream: list[Event] = [imp("r1", "i1", T0), snap("r1", T0), imp("r9", "x", T0 + W + 3 * SEC), lab("r1", "i1", t_l)]
    for e in stream:
        runner.process(e)
    assert runner.watermark < T0 + W
    assert drain(runner) == ([], [])  # waits for t_i + W
    runner.process(imp("r9", "y", T0 + W + OOO + 1))
    samples, _ = drain(runner)
    assert samples == [expected_sample("NEGATIVE"), expected_sample("LATE_POSITIVE", t_l=t_l)]


def test_late_positive_without_snapshot_has_no_features_like_its_negative() -> None:
    r = replay([imp("r1", "i1", T0), lab("r1", "i1", T0 + 2 * HOUR)])
    assert r.samples == [expected_sample("NEGATIVE", has_snapshot=False),
                         expected_sample("LATE_POSITIVE", t_l=T0 + 2 * HOUR, has_snapshot=False)]


def test_label_beyond_horizon_goes_to_unmatched() -> None:
    t_l = T0 + H + 1
    r = replay([imp("r1", "i1", T0), snap("r1", T0), lab("r1", "i1", t_l)])
    assert r.samples == [expected_sample("NEGATIVE")]
    assert r.unmatched == [unmatched("beyond_horizon", t_l)]


def test_label_beyond_horizon_after_the_state_was_dropped_is_no_impression() -> None:
    t_l = T0 + H + HOUR
    r = replay([imp("r1", "i1", T0), snap("r1", T0), imp("r2", "x", T0 + H + 30 * MIN), lab("r1", "i1", t_l)])
    assert [s["sample_id"] for s in r.samples if s["request_id"] == "r1"] == ["i1:click:NEGATIVE"]
    assert r.unmatched == [unmatched("no_impression", t_l)]


def test_label_before_impression_is_buffered_then_joined() -> None:
    r = replay([lab("r1", "i1", T0 + 10 * SEC), snap("r1", T0), imp("r1", "i1", T0)])
    assert r.samples == [expected_sample("POSITIVE", t_l=T0 + 10 * SEC)]
    assert r.unmatched == []


def test_buffered_label_with_late_delay_gives_negative_and_late_positive() -> None:
    # A label W + 1 ms after its impression can only arrive first with a large out-of-orderness.
    t_l = T0 + W + 1
    r = replay([lab("r1", "i1", t_l), imp("r1", "i1", T0), snap("r1", T0)], join_config(out_of_orderness=15 * MIN))
    assert r.samples == [expected_sample("NEGATIVE"), expected_sample("LATE_POSITIVE", t_l=t_l)]


def test_orphan_label_goes_to_no_impression_once_the_watermark_passes_t_l_plus_w() -> None:
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    runner.process(lab("r1", "i1", T0))
    runner.process(imp("r2", "x", T0 + W + OOO))  # watermark t_l + W - 1
    assert drain(runner)[1] == []
    runner.process(imp("r2", "y", T0 + W + OOO + 1))  # watermark t_l + W
    assert drain(runner)[1] == [unmatched("no_impression", T0)]
    assert runner.state_of("r1") is None


def test_orphan_label_at_end_of_input() -> None:
    r = replay([lab("r1", "ghost", T0)])
    assert r.samples == []
    assert r.unmatched == [unmatched("no_impression", T0, iid="ghost")]


def test_impression_just_before_the_buffer_expires_still_joins() -> None:
    # label at T0 is buffered until the watermark passes T0 + W; an impression at T0 + W
    # (delay -W) arrives while the watermark is T0 + W - 1.
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    runner.process(lab("r1", "i1", T0))
    runner.process(imp("r2", "x", T0 + W + OOO))
    assert runner.watermark == T0 + W - 1
    runner.process(imp("r1", "i1", T0 + W))
    runner.finish()
    samples, unmatched_ = drain(runner)
    positives = [s for s in samples if s["impression_id"] == "i1"]
    assert [(s["attribution"], s["delay_ms"]) for s in positives] == [("POSITIVE", -W)]
    assert unmatched_ == []


def test_duplicate_impression_first_wins() -> None:
    r = replay([imp("r1", "i1", T0, user="first"), imp("r1", "i1", T0, user="second"), snap("r1", T0)])
    assert r.samples == [expected_sample("NEGATIVE", user="first")]
    assert r.unmatched == []


def test_duplicate_label_goes_to_unmatched_duplicate() -> None:
    r = replay([imp("r1", "i1", T0), snap("r1", T0), lab("r1", "i1", T0 + 5 * SEC), lab("r1", "i1", T0 + 6 * SEC)])
    assert r.samples == [expected_sample("POSITIVE", t_l=T0 + 5 * SEC)]
    assert r.unmatched == [unmatched("duplicate", T0 + 6 * SEC)]


def test_exact_duplicate_label_and_duplicates_after_late_positive() -> None:
    events: list[Event] = [imp("r1", "i1", T0), snap("r1", T0), lab("r1", "i1", T0 + HOUR), lab("r1", "i1", T0 + HOUR),
              lab("r1", "i1", T0 + 2 * HOUR)]
    r = replay(events)
    assert [s["attribution"] for s in r.samples] == ["NEGATIVE", "LATE_POSITIVE"]
    assert r.by_id["i1:click:LATE_POSITIVE"]["label_time_ms"] == T0 + HOUR
    assert r.unmatched == [unmatched("duplicate", T0 + HOUR), unmatched("duplicate", T0 + 2 * HOUR)]


def test_first_label_to_arrive_wins_even_when_a_later_one_has_an_earlier_time() -> None:
    # Within the out-of-orderness, label B (delay W + 1 s) arrives before label A (delay W - 1 s).
    a, b = lab("r1", "i1", T0 + W - SEC), lab("r1", "i1", T0 + W + SEC)
    r = replay([imp("r1", "i1", T0), snap("r1", T0), b, a])
    assert [s["attribution"] for s in r.samples] == ["NEGATIVE", "LATE_POSITIVE"]
    assert r.by_id["i1:click:LATE_POSITIVE"]["label_time_ms"] == b.event_time_ms
    assert r.unmatched == [unmatched("duplicate", a.event_time_ms)]


def test_snapshot_arriving_late_but_within_s_is_waited_for() -> None:
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    runner.process(imp("r1", "i1", T0))
    runner.process(lab("r1", "i1", T0 + 5 * SEC))
    assert drain(runner) == ([], [])  # the POSITIVE waits for the snapshot
    runner.process(snap("r1", T0 + 20 * SEC, sparse={"city": "sh"}))
    samples, _ = drain(runner)
    assert samples == [expected_sample("POSITIVE", t_l=T0 + 5 * SEC, sparse={"city": "sh"})]
    runner.finish()
    assert drain(runner) == ([], [])


def test_snapshot_missing_gives_has_snapshot_false_once_s_has_passed() -> None:
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    runner.process(imp("r1", "i1", T0))
    runner.process(lab("r1", "i1", T0 + 5 * SEC))
    runner.process(imp("r2", "x", T0 + S + OOO))  # watermark t_i + S - 1
    assert drain(runner) == ([], [])
    runner.process(imp("r2", "y", T0 + S + OOO + 1))  # watermark t_i + S
    samples, _ = drain(runner)
    assert samples == [expected_sample("POSITIVE", t_l=T0 + 5 * SEC, has_snapshot=False)]


def test_snapshot_missing_negative() -> None:
    r = replay([imp("r1", "i1", T0)])
    assert r.samples == [expected_sample("NEGATIVE", has_snapshot=False)]


def test_snapshot_later_than_s_is_not_joined() -> None:
    r = replay([imp("r1", "i1", T0), lab("r1", "i1", T0 + 5 * SEC), snap("r1", T0 + S + 1)])
    assert r.samples == [expected_sample("POSITIVE", t_l=T0 + 5 * SEC, has_snapshot=False)]
    r = replay([imp("r1", "i1", T0), snap("r1", T0 + S + 1)])
    assert r.samples == [expected_sample("NEGATIVE", has_snapshot=False)]


def test_snapshot_exactly_at_s_is_joined() -> None:
    r = replay([imp("r1", "i1", T0), snap("r1", T0 + S)])
    assert r.samples == [expected_sample("NEGATIVE")]


def test_snapshot_before_impression_is_joined_and_first_snapshot_wins() -> None:
    r = replay([snap("r1", T0 - 2 * SEC, sparse={"city": "first"}), snap("r1", T0, sparse={"city": "second"}),
                imp("r1", "i1", T0), imp("r1", "i2", T0 + SEC), lab("r1", "i2", T0 + 3 * SEC)])
    assert r.by_id["i1:click:NEGATIVE"]["sparse"] == {"city": "first"}
    assert r.by_id["i2:click:POSITIVE"]["sparse"] == {"city": "first"}


def test_snapshot_after_the_features_froze_is_not_joined_even_if_its_time_is_within_s() -> None:
    # A snapshot that arrives after the watermark passed t_i + S is late data: the features are frozen.
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    runner.process(imp("r1", "i1", T0))
    runner.process(imp("r2", "x", T0 + S + OOO + 1))  # watermark t_i + S
    runner.process(snap("r1", T0 + S))
    runner.finish()
    samples, _ = drain(runner)
    assert [s["has_snapshot"] for s in samples if s["request_id"] == "r1"] == [False]


def test_several_tasks_one_sample_stream_each() -> None:
    click = TaskConfig(name="click", window=10 * MIN, horizon=24 * HOUR)
    conv = TaskConfig(name="conversion", label_type="purchase", window=HOUR, horizon=7 * 24 * HOUR)
    config = join_config(click, conv)
    events: list[Event] = [imp("r1", "i1", T0), snap("r1", T0), lab("r1", "i1", T0 + MIN),
              lab("r1", "i1", T0 + 30 * MIN, label_type="purchase", value=9.5),
              imp("r1", "i2", T0), lab("r1", "i2", T0 + 2 * HOUR, label_type="purchase")]
    r = replay(events, config)
    assert r.by_id["i1:click:POSITIVE"] == expected_sample("POSITIVE", t_l=T0 + MIN)
    assert r.by_id["i1:conversion:POSITIVE"] == expected_sample(
        "POSITIVE", t_l=T0 + 30 * MIN, task="conversion", window=HOUR)
    assert r.by_id["i2:click:NEGATIVE"] == expected_sample("NEGATIVE", iid="i2")
    assert r.by_id["i2:conversion:NEGATIVE"] == expected_sample("NEGATIVE", iid="i2", task="conversion", window=HOUR)
    assert r.by_id["i2:conversion:LATE_POSITIVE"]["delay_ms"] == 2 * HOUR
    assert r.ids() == {"i1:click:POSITIVE", "i1:conversion:POSITIVE", "i2:click:NEGATIVE",
                       "i2:conversion:NEGATIVE", "i2:conversion:LATE_POSITIVE"}
    assert r.unmatched == []


def test_labels_of_other_types_do_not_affect_a_task_and_unused_types_are_ignored() -> None:
    r = replay([imp("r1", "i1", T0), snap("r1", T0), lab("r1", "i1", T0 + SEC, label_type="like"),
                lab("r1", "i1", T0 + 2 * SEC, label_type="like"), lab("r1", "ghost", T0, label_type="share")])
    assert r.samples == [expected_sample("NEGATIVE")]
    assert r.unmatched == []
    assert r.ignored == {"like": 2, "share": 1}


def test_ignored_label_does_not_create_state() -> None:
    join = SampleJoin(join_config())
    step = join.on_event(None, lab("r1", "i1", T0, label_type="like"), WATERMARK_START)
    assert step.state is None and step.timers == [] and step.ignored_label_types == ["like"]


def test_state_is_dropped_once_the_watermark_passes_t_i_plus_h() -> None:
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    runner.process(imp("r1", "i1", T0))
    runner.process(snap("r1", T0))
    runner.process(imp("r2", "x", T0 + H + OOO))  # watermark t_i + H - 1
    state = runner.state_of("r1")
    assert state is not None and "i1" in state.impressions
    runner.process(imp("r2", "y", T0 + H + OOO + 1))  # watermark t_i + H
    assert runner.state_of("r1") is None
    # a label with delay exactly H arriving after the drop finds no impression
    runner.process(lab("r1", "i1", T0 + H + OOO + 1))
    runner.finish()
    assert [u["reason"] for u in drain(runner)[1]] == ["no_impression"]


def test_end_of_input_resolves_everything_and_clears_all_state() -> None:
    events: list[Event] = [imp("r1", "i1", T0), snap("r1", T0), imp("r1", "i2", T0), lab("r1", "i2", T0 + 5 * SEC),
              lab("r1", "i1", T0 + W + SEC), imp("r2", "j1", T0 + MIN), lab("r3", "ghost", T0),
              snap("r4", T0)]
    r = replay(events, finish=False)
    assert r.runner.pending_keys() > 0
    r.runner.finish()
    assert r.runner.watermark == WATERMARK_END
    ids = sorted(s.sample_id for s in r.runner.samples)
    assert ids == ["i1:click:LATE_POSITIVE", "i1:click:NEGATIVE", "i2:click:POSITIVE", "j1:click:NEGATIVE"]
    assert [(u.impression_id, u.reason) for u in r.runner.unmatched] == [("ghost", "no_impression")]
    assert r.runner.pending_keys() == 0
    assert r.runner.pending_timers() == 0


@pytest.mark.parametrize(
    ("delay", "attributions", "reason"),
    [
        (-5 * SEC, ["POSITIVE"], None),
        (0, ["POSITIVE"], None),
        (W, ["POSITIVE"], None),
        (W + 1, ["NEGATIVE", "LATE_POSITIVE"], None),
        (H, ["NEGATIVE", "LATE_POSITIVE"], None),
        (H + 1, ["NEGATIVE"], "beyond_horizon"),
    ],
)
def test_boundaries_of_w_and_h(delay: int, attributions: list[str], reason: str | None) -> None:
    r = replay([imp("r1", "i1", T0), snap("r1", T0), lab("r1", "i1", T0 + delay)])
    assert [s["attribution"] for s in r.samples] == attributions
    assert [u["reason"] for u in r.unmatched] == ([reason] if reason else [])
    for s in r.samples:
        if s["label"] == 1:
            assert s["delay_ms"] == delay and s["emit_time_ms"] == T0 + delay


def test_boundaries_with_custom_window_and_horizon() -> None:
    task = TaskConfig(name="click", window=MIN, horizon=10 * MIN, snapshot_wait=10 * SEC)
    config = join_config(task)
    cases = {"a": MIN, "b": MIN + 1, "c": 10 * MIN, "d": 10 * MIN + 1}
    events: list[Event] = []
    for n, (iid, delay) in enumerate(cases.items()):
        t_i = T0 + n * HOUR  # in event-time order, one case after the other
        events += [imp(iid, iid, t_i), snap(iid, t_i + 10 * SEC), lab(iid, iid, t_i + delay)]
    r = replay(events, config)
    assert r.ids() == {"a:click:POSITIVE", "b:click:NEGATIVE", "b:click:LATE_POSITIVE", "c:click:NEGATIVE",
                       "c:click:LATE_POSITIVE", "d:click:NEGATIVE"}
    assert r.by_id["b:click:NEGATIVE"]["emit_time_ms"] == T0 + HOUR + MIN
    assert all(s["has_snapshot"] for s in r.samples)  # snapshot exactly at t_i + S
    assert r.reasons() == [("d", "beyond_horizon")]


def test_label_within_window_after_a_negative_was_emitted_is_a_late_positive() -> None:
    # Late data (disorder beyond the out-of-orderness): the NEGATIVE is out, the label still counts.
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    runner.process(imp("r1", "i1", T0))
    runner.process(imp("r2", "x", T0 + W + OOO + 1))
    runner.process(lab("r1", "i1", T0 + MIN))
    runner.finish()
    samples, _ = drain(runner)
    assert sorted(s["sample_id"] for s in samples if s["request_id"] == "r1") == [
        "i1:click:LATE_POSITIVE", "i1:click:NEGATIVE"]


def test_step_api_shapes_and_timers() -> None:
    join = SampleJoin(join_config())
    step = join.on_event(None, imp("r1", "i1", T0), WATERMARK_START)
    assert isinstance(step.state, RequestState)
    assert sorted(step.timers) == [T0 + W, T0 + H]
    assert step.samples == [] and step.unmatched == [] and step.ignored_label_types == []
    assert join.pending_timers(step.state) == [T0 + W, T0 + H]
    step2 = join.on_timer(step.state, T0 + W, T0 + W)
    assert [s.attribution for s in step2.samples] == ["NEGATIVE"]
    assert step2.state is not None
    assert join.pending_timers(step2.state) == [T0 + H]
    step3 = join.on_timer(step2.state, T0 + H, T0 + H)
    assert step3.state is None
    assert join.on_timer(None, T0, T0).state is None


def test_unmatched_label_object_exposes_request_id_and_reason() -> None:
    join = SampleJoin(join_config())
    step = join.on_event(None, lab("r1", "ghost", T0, value=2.5), WATERMARK_START)
    assert step.timers == [T0 + W]
    out = join.on_timer(step.state, T0 + W, T0 + W)
    (u,) = out.unmatched
    assert (u.request_id, u.impression_id, u.reason) == ("r1", "ghost", "no_impression")
    assert u.to_json() == unmatched("no_impression", T0, iid="ghost", value=2.5)
    assert out.state is None


def test_snapshot_alone_expires_after_the_horizon() -> None:
    runner = LocalJoinRunner(SampleJoin(join_config()), store=BytesStore())
    runner.process(snap("r1", T0))
    runner.process(imp("r2", "x", T0 + H + OOO))
    assert runner.state_of("r1") is not None
    runner.process(imp("r2", "y", T0 + H + OOO + 1))
    assert runner.state_of("r1") is None


def test_restored_state_under_a_changed_task_list_is_adopted() -> None:
    old = SampleJoin(join_config())
    step = old.on_event(None, imp("r1", "i1", T0), WATERMARK_START)
    assert step.state is not None
    raw = state_to_bytes(step.state)
    click = TaskConfig(name="click")
    like = TaskConfig(name="like")
    new = SampleJoin(join_config(like, click))
    state = state_from_bytes(raw)
    assert new.pending_timers(state) == [T0 + W, T0 + H]
    out = new.on_timer(state, T0 + W, T0 + W)
    assert sorted(s.sample_id for s in out.samples) == ["i1:click:NEGATIVE", "i1:like:NEGATIVE"]
