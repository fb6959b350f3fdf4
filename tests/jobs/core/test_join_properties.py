"""Property tests of the join core over random event streams with bounded disorder (docs/join.md).

Every stream is checked against the section 6 invariants and against a batch oracle that knows
nothing of watermarks or timers; the same stream is run with the watermark advanced after every
event and with a lagging watermark (it must not matter), with the state serialized at every step,
and through both entry points (``on_event``/``on_timer`` and the runner's fast loop).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.config import JoinConfig, TaskConfig
from jobs.core import Event, FeatureSnapshot, Impression, Label, SampleJoin
from jobs.core.local import LocalJoinRunner
from jobs.runtime.state_bytes import BytesStore
from tests.jobs.core.helpers import T0

W, H, S, OOO = 10_000, 60_000, 3_000, 2_000  # small, so that random streams hit every boundary
CLICK = TaskConfig(name="click", window=W, horizon=H, snapshot_wait=S)
CONV = TaskConfig(name="conv", label_type="purchase", window=2 * W, horizon=2 * H, snapshot_wait=S)
ONE_TASK = JoinConfig(tasks=(CLICK,), out_of_orderness=OOO)
TWO_TASKS = JoinConfig(tasks=(CLICK, CONV), out_of_orderness=OOO)

DELAYS = st.one_of(
    st.sampled_from([-W, -1, 0, 1, S, W - 1, W, W + 1, H - 1, H, H + 1, 2 * W, 2 * W + 1, 2 * H, 2 * H + 1]),
    st.integers(min_value=-W, max_value=2 * H + W),
)


@dataclass
class Plan:
    events: list[Event]
    lag_steps: list[int]  # per event: how far behind the exact watermark a lagging runtime stays


@st.composite
def streams(draw: st.DrawFn, label_types: tuple[str, ...] = ("click",)) -> Plan:
    timed: list[tuple[int, int, Event]] = []
    seq = 0

    def add(event: Event) -> None:
        nonlocal seq
        jitter = draw(st.integers(min_value=0, max_value=OOO))
        timed.append((event.event_time_ms + jitter, seq, event))
        seq += 1

    n_requests = draw(st.integers(min_value=1, max_value=6))
    for r in range(n_requests):
        rid = f"r{r}"
        t_req = T0 + draw(st.integers(min_value=0, max_value=3 * H))
        for _ in range(draw(st.integers(min_value=0, max_value=2))):  # first snapshot (by arrival) wins
            t_s = t_req + draw(st.sampled_from([-S, 0, 1, S - 1, S, S + 1, 2 * S]))
            add(FeatureSnapshot(rid, t_s, {"s": str(t_s)}, {"d": float(r)}))
        for k in range(draw(st.integers(min_value=0, max_value=3))):
            iid = f"{rid}-i{k}"
            t_i = t_req + draw(st.integers(min_value=0, max_value=S))
            add(Impression(rid, iid, f"u{r}", f"v{k}", t_i, k, {"p": str(k)}))
            if draw(st.booleans()) and draw(st.booleans()):
                add(Impression(rid, iid, "dup-user", "dup-item", t_i, k, {}))  # duplicate: first wins
            for lt in label_types:
                for _ in range(draw(st.integers(min_value=0, max_value=3))):
                    add(Label(rid, iid, lt, t_i + draw(DELAYS), draw(st.sampled_from([1.0, 2.5]))))
            if draw(st.integers(min_value=0, max_value=4)) == 0:
                add(Label(rid, iid, "like", t_i + draw(DELAYS)))  # no task uses it
        if draw(st.integers(min_value=0, max_value=4)) == 0:
            add(Label(rid, f"{rid}-ghost", label_types[0], t_req + draw(st.integers(min_value=0, max_value=W))))
    timed.sort(key=lambda x: (x[0], x[1]))
    events = [e for _, _, e in timed]
    lags = [draw(st.sampled_from([0, 0, 1, OOO, 3 * W, 2 * H])) for _ in events]
    return Plan(events, lags)


# -- the oracle ----------------------------------------------------------------------------------
def oracle(events: list[Event], config: JoinConfig) -> tuple[Counter[str], Counter[tuple[str, str, int]]]:
    """Expected samples (canonical JSON) and unmatched (impression_id, reason-set, t_l), timing-free."""
    impressions: dict[tuple[str, str], Impression] = {}
    snapshots: dict[str, FeatureSnapshot] = {}
    labels: dict[tuple[str, str, str], list[Label]] = {}
    used = {t.label_type for t in config.tasks}
    max_h = max(t.horizon for t in config.tasks)
    for e in events:  # arrival order
        if isinstance(e, Impression):
            impressions.setdefault((e.request_id, e.impression_id), e)
        elif isinstance(e, FeatureSnapshot):
            snapshots.setdefault(e.request_id, e)
        elif e.label_type in used:
            labels.setdefault((e.request_id, e.impression_id, e.label_type), []).append(e)
    samples: Counter[str] = Counter()
    unmatched: Counter[tuple[str, str, int]] = Counter()
    for (rid, iid, lt), ls in labels.items():
        i = impressions.get((rid, iid))
        if i is None:
            for lab in ls:
                unmatched[(iid, "no_impression", lab.event_time_ms)] += 1
            continue
        first, *repeats = ls
        delay = first.event_time_ms - i.event_time_ms
        tasks = [t for t in config.tasks if t.label_type == lt]
        reporter = tasks[0]
        for lab in repeats:
            # a repeat finds the impression unless its state was dropped (possible only past max H)
            reasons = "duplicate" if lab.event_time_ms - i.event_time_ms <= max_h else "duplicate|no_impression"
            unmatched[(iid, reasons, lab.event_time_ms)] += 1
        if delay > reporter.horizon:
            unmatched[(iid, "beyond_horizon|no_impression", first.event_time_ms)] += 1
    for (rid, iid), i in impressions.items():
        t_i = i.event_time_ms
        snap = snapshots.get(rid)
        for task in config.tasks:
            joined = snap is not None and t_i - max_h <= snap.event_time_ms <= t_i + task.snapshot_wait
            task_labels = labels.get((rid, iid, task.label_type))
            first_label: Label | None = task_labels[0] if task_labels else None

            def sample(attribution: str, label: Label | None, task: TaskConfig = task, joined: bool = joined,
                       snap: FeatureSnapshot | None = snap, i: Impression = i) -> None:
                t_l = None if label is None else label.event_time_ms
                samples[json.dumps({
                    "sample_id": f"{i.impression_id}:{task.name}:{attribution}", "task": task.name,
                    "request_id": i.request_id, "impression_id": i.impression_id, "user_id": i.user_id,
                    "item_id": i.item_id, "position": i.position, "context": i.context,
                    "impression_time_ms": i.event_time_ms, "label": 0 if label is None else 1,
                    "attribution": attribution, "label_time_ms": t_l,
                    "delay_ms": None if t_l is None else t_l - i.event_time_ms,
                    "emit_time_ms": i.event_time_ms + task.window if t_l is None else t_l,
                    "sparse": snap.sparse if joined and snap else {}, "dense": snap.dense if joined and snap else {},
                    "has_snapshot": joined,
                }, sort_keys=True)] += 1

            if first_label is not None and first_label.event_time_ms - t_i <= task.window:
                sample("POSITIVE", first_label)
            else:
                sample("NEGATIVE", None)
                if first_label is not None and first_label.event_time_ms - t_i <= task.horizon:
                    sample("LATE_POSITIVE", first_label)
    return samples, unmatched


# -- running ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    samples: list[dict[str, Any]]
    unmatched: list[dict[str, Any]]
    ignored: Counter[str]
    runner: LocalJoinRunner


def run(plan: Plan, config: JoinConfig, *, mode: str) -> Outcome:
    """mode: "exact" (watermark after every event, step API, state as bytes), "fast" (the runner's
    loop), "lagging" (watermark advanced rarely and behind, state as bytes)."""
    runner = LocalJoinRunner(SampleJoin(config), store=None if mode == "fast" else BytesStore())
    if mode == "fast":
        runner.run(plan.events)
    elif mode == "exact":
        for e in plan.events:
            runner.process(e)
    else:
        for e, lag in zip(plan.events, plan.lag_steps, strict=True):
            runner.process(e, advance=False)
            if lag < 3 * W:
                runner.advance_to(runner.current_watermark() - lag)
    runner.finish()
    return Outcome([s.to_json() for s in runner.samples], [u.to_json() for u in runner.unmatched],
                   runner.ignored_label_types, runner)


def canonical(samples: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.dumps(s, sort_keys=True) for s in samples)


def check_invariants(plan: Plan, config: JoinConfig, out: Outcome) -> None:
    # no sample_id twice
    ids = [s["sample_id"] for s in out.samples]
    assert len(ids) == len(set(ids))
    # state and timers empty at the end
    assert out.runner.pending_keys() == 0
    assert out.runner.pending_timers() == 0
    impressions: dict[str, Impression] = {}
    first_label: dict[tuple[str, str], Label] = {}
    for e in plan.events:
        if isinstance(e, Impression):
            impressions.setdefault(e.impression_id, e)
    for e in plan.events:
        if isinstance(e, Label) and e.impression_id in impressions:
            first_label.setdefault((e.impression_id, e.label_type), e)
    for task in config.tasks:
        counts = Counter(s["attribution"] for s in out.samples if s["task"] == task.name)
        # per task, #POSITIVE + #NEGATIVE == distinct impressions
        assert counts["POSITIVE"] + counts["NEGATIVE"] == len(impressions)
        # #LATE_POSITIVE == impressions whose first label has W < delay <= H
        late = 0
        for iid, i in impressions.items():
            lab = first_label.get((iid, task.label_type))
            if lab is not None and task.window < lab.event_time_ms - i.event_time_ms <= task.horizon:
                late += 1
        assert counts["LATE_POSITIVE"] == late
    # ignored label types are counted, never unmatched
    assert out.ignored["like"] == sum(1 for e in plan.events if isinstance(e, Label) and e.label_type == "like")
    assert all(u["label_type"] != "like" for u in out.unmatched)


def check_oracle(plan: Plan, config: JoinConfig, out: Outcome) -> None:
    expected, expected_unmatched = oracle(plan.events, config)
    got = canonical(out.samples)
    assert got == expected, (f"missing {list((expected - got).elements())[:3]}\n"
                             f"extra {list((got - expected).elements())[:3]}")
    assert len(out.unmatched) == sum(expected_unmatched.values())
    allowed: dict[tuple[str, int], set[str]] = {}
    for (iid, reasons, t_l), _n in expected_unmatched.items():
        allowed.setdefault((iid, t_l), set()).update(reasons.split("|"))
    for u in out.unmatched:
        assert u["reason"] in allowed[(u["impression_id"], u["event_time_ms"])], u


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(streams())
def test_one_task_invariants_and_oracle(plan: Plan) -> None:
    out = run(plan, ONE_TASK, mode="exact")
    check_invariants(plan, ONE_TASK, out)
    check_oracle(plan, ONE_TASK, out)


@SETTINGS
@given(streams(("click", "purchase")))
def test_two_tasks_invariants_and_oracle(plan: Plan) -> None:
    out = run(plan, TWO_TASKS, mode="exact")
    check_invariants(plan, TWO_TASKS, out)
    check_oracle(plan, TWO_TASKS, out)


@SETTINGS
@given(streams(("click", "purchase")))
def test_results_do_not_depend_on_how_often_the_watermark_advances(plan: Plan) -> None:
    exact = run(plan, TWO_TASKS, mode="exact")
    lagging = run(plan, TWO_TASKS, mode="lagging")
    assert canonical(lagging.samples) == canonical(exact.samples)
    assert len(lagging.unmatched) == len(exact.unmatched)
    check_oracle(plan, TWO_TASKS, lagging)


@SETTINGS
@given(streams(("click", "purchase")))
def test_fast_loop_equals_step_api(plan: Plan) -> None:
    exact = run(plan, TWO_TASKS, mode="exact")
    fast = run(plan, TWO_TASKS, mode="fast")
    assert fast.samples == exact.samples  # same order too
    assert fast.unmatched == exact.unmatched
    assert fast.ignored == exact.ignored
    assert fast.runner.pending_keys() == 0
