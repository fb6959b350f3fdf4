"""Floods against the join core: state stays bounded, and what a cap turns away is counted.

Each test prints its figures (run with ``-s``) and records them as junit properties.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from common.config import validate_config
from common.errors import ConfigError
from jobs.config import JoinConfig
from jobs.core import Event, Impression, Label, SampleJoin
from jobs.core.join import IMPRESSIONS_DROPPED, LABELS_NOT_BUFFERED
from jobs.core.local import LocalJoinRunner
from jobs.runtime.state_bytes import state_to_bytes

T0 = 1_700_000_000_000
W, H = 60_000, 600_000
RATE_PER_S = 50  # event-time rate of the floods: one event every 20 ms


def join_config(**caps: int) -> JoinConfig:
    return JoinConfig.model_validate({"tasks": [{"name": "click", "window": W, "horizon": H}], **caps})


def state_figures(runner: LocalJoinRunner) -> tuple[int, int, int]:
    """(keys, impressions, buffered labels) held right now."""
    states = runner.states.values()
    return len(runner.states), sum(len(s.impressions) for s in states), sum(len(s.orphans) for s in states)


def flood(runner: LocalJoinRunner, events: Iterator[Event], sample_every: int = 500) -> dict[str, int]:
    """Feed ``events``; return the peak of each state figure and the figures after the input ends."""
    peak = [0, 0, 0]
    n = 0
    for n, event in enumerate(events, 1):
        runner.process(event)
        if n % sample_every == 0:
            peak = [max(a, b) for a, b in zip(peak, state_figures(runner), strict=True)]
    before_end = state_figures(runner)
    runner.finish()
    after = state_figures(runner)
    return {"events": n, "peak_keys": peak[0], "peak_impressions": peak[1], "peak_buffered_labels": peak[2],
            "keys_before_end": before_end[0], "keys_after_end": after[0]}


def report(record: Callable[[str, object], None], what: str, figures: dict[str, int]) -> str:
    for k, v in figures.items():
        record(k, v)
    line = f"{what}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\n[flood] {line}")
    return line


def spread(n: int) -> Iterator[int]:
    """Event times of ``n`` events at RATE_PER_S: they span n / RATE_PER_S seconds of event time."""
    return (T0 + i * 1_000 // RATE_PER_S for i in range(n))


def test_impressions_that_never_get_labels(record_property: Callable[[str, object], None]) -> None:
    n = 100_000  # 2000 s of event time: more than three horizons
    runner = LocalJoinRunner(SampleJoin(join_config()))
    events = (Impression(f"r{i}", f"i{i}", "u", "v", t) for i, t in enumerate(spread(n)))
    figures = flood(runner, events)
    negatives = sum(1 for s in runner.samples if s.attribution == "NEGATIVE")
    line = report(record_property, "impressions without labels", {**figures, "negatives": negatives})
    # state is dropped at t_i + H: the keys held never exceed one horizon's worth of impressions
    bound = (H + runner.out_of_orderness_ms) * RATE_PER_S // 1_000 + 1_000
    assert figures["peak_keys"] <= bound < n, line
    assert figures["keys_after_end"] == 0 and negatives == n, line


def test_labels_that_never_get_impressions(record_property: Callable[[str, object], None]) -> None:
    n = 50_000
    runner = LocalJoinRunner(SampleJoin(join_config()))
    events = (Label(f"r{i}", f"i{i}", "click", t) for i, t in enumerate(spread(n)))
    figures = flood(runner, events)
    reasons = Counter(u.reason for u in runner.unmatched)
    line = report(record_property, "labels without impressions", {**figures, **reasons})
    # a buffered label waits W at most
    bound = (W + runner.out_of_orderness_ms) * RATE_PER_S // 1_000 + 1_000
    assert figures["peak_keys"] <= bound < n, line
    assert figures["keys_after_end"] == 0 and reasons == {"no_impression": n}, line


def test_one_request_with_a_huge_number_of_impressions(record_property: Callable[[str, object], None]) -> None:
    n, cap = 30_000, 1_000
    join = SampleJoin(join_config(max_impressions_per_request=cap))
    runner = LocalJoinRunner(join)
    events: list[Event] = [Impression("hot", f"i{i}", "u", "v", T0 + i) for i in range(n)]
    events += [Label("hot", f"i{i}", "click", T0 + n + i) for i in range(0, n, 10)]  # a label on every 10th
    figures = flood(runner, iter(events), sample_every=1_000)
    samples = Counter(s.attribution for s in runner.samples)
    line = report(record_property, "one request, many impressions", {
        **figures, "cap": cap, "impressions_dropped": join.over_cap[IMPRESSIONS_DROPPED],
        **samples, "unmatched": len(runner.unmatched)})
    assert figures["peak_impressions"] == cap, line
    assert join.over_cap[IMPRESSIONS_DROPPED] == n - cap, line
    # the kept impressions are joined as the contract says; labels of dropped ones are unmatched
    assert samples["POSITIVE"] == cap // 10 and samples["NEGATIVE"] == cap - cap // 10, line
    assert len(runner.unmatched) == (n - cap) // 10, line
    assert figures["keys_after_end"] == 0, line


def test_a_label_storm_on_one_impression(record_property: Callable[[str, object], None]) -> None:
    n = 50_000
    runner = LocalJoinRunner(SampleJoin(join_config()))
    runner.process(Impression("r", "i", "u", "v", T0))
    runner.process(Label("r", "i", "click", T0 + 1_000))
    size_after_first = len(state_to_bytes(runner.states["r"]))
    peak_bytes = size_after_first
    for k in range(n):
        runner.process(Label("r", "i", "click", T0 + 1_000 + k % 5_000))
        if k % 1_000 == 0:
            peak_bytes = max(peak_bytes, len(state_to_bytes(runner.states["r"])))
    runner.finish()
    reasons = Counter(u.reason for u in runner.unmatched)
    line = report(record_property, "label storm on one impression", {
        "labels": n + 1, "state_bytes_after_first_label": size_after_first, "peak_state_bytes": peak_bytes,
        "samples": len(runner.samples), **reasons, "keys_after_end": len(runner.states)})
    assert peak_bytes == size_after_first, line
    assert [s.sample_id for s in runner.samples] == ["i:click:POSITIVE"], line
    assert reasons == {"duplicate": n}, line


def test_a_label_storm_before_its_impression(record_property: Callable[[str, object], None]) -> None:
    n, cap = 20_000, 500
    join = SampleJoin(join_config(max_buffered_labels_per_request=cap))
    runner = LocalJoinRunner(join)
    events: list[Event] = [Label("r", f"i{k}", "click", T0 + k % 1_000) for k in range(n)]
    events.append(Impression("r", "i0", "u", "v", T0))
    figures = flood(runner, iter(events), sample_every=1_000)
    reasons = Counter(u.reason for u in runner.unmatched)
    line = report(record_property, "label storm before its impression", {
        **figures, "cap": cap, "labels_not_buffered": join.over_cap[LABELS_NOT_BUFFERED], **reasons})
    assert figures["peak_buffered_labels"] == cap, line
    assert join.over_cap[LABELS_NOT_BUFFERED] == n - cap, line
    # nothing is lost: the buffered label of i0 is joined, every other label is unmatched
    assert [s.sample_id for s in runner.samples if s.label] == ["i0:click:POSITIVE"], line
    assert reasons == {"no_impression": n - 1}, line


@pytest.mark.parametrize("field", ["max_impressions_per_request", "max_buffered_labels_per_request"])
def test_caps_must_be_positive(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        validate_config({field: 0}, JoinConfig)
