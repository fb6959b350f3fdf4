"""Per-partition watermarks of the embedded runtime: bounded out-of-orderness, min over sources, idleness."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.runtime.watermarks import WATERMARK_START, PartitionWatermark

SOURCES = ("imp", "snap", "lab")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock, **kw) -> PartitionWatermark:
    return PartitionWatermark(SOURCES, out_of_orderness_ms=5_000, idleness_ms=30_000, clock=clock, **kw)


def test_the_minimum_over_sources_minus_the_out_of_orderness() -> None:
    clock = FakeClock()
    wm = make(clock)
    assert wm.current == WATERMARK_START
    assert not wm.observe("imp", 100_000)  # the other sources have seen nothing yet
    assert not wm.observe("snap", 90_000)
    assert wm.observe("lab", 95_000)
    assert wm.current == 90_000 - 5_000 - 1
    assert wm.observe("snap", 200_000)
    assert wm.current == 95_000 - 5_001
    assert not wm.observe("snap", 150_000)  # older events never move it back
    assert wm.current == 95_000 - 5_001


def test_an_idle_source_stops_holding_it_back_until_it_speaks_again() -> None:
    clock = FakeClock()
    wm = make(clock)
    wm.observe("imp", 100_000)
    wm.observe("snap", 100_000)
    assert wm.current == WATERMARK_START  # "lab" has no data yet
    clock.now += 29.9
    assert not wm.check_idle()
    wm.observe("imp", 120_000)
    wm.observe("snap", 120_000)
    wm.touch("imp")
    wm.touch("snap")
    clock.now += 0.2
    assert wm.check_idle()  # "lab" silent for 30 s of wall time
    assert wm.idle_sources() == ["lab"]
    assert wm.current == 120_000 - 5_001
    wm.observe("lab", 50_000)  # back, behind: it is active again but the watermark never goes back
    wm.touch("lab")
    assert wm.idle_sources() == []
    assert wm.current == 120_000 - 5_001
    wm.observe("imp", 130_000)
    wm.observe("snap", 130_000)
    assert wm.current == 120_000 - 5_001  # held by "lab" again
    wm.observe("lab", 140_000)
    assert wm.current == 130_000 - 5_001


def test_all_idle_holds_the_watermark() -> None:
    clock = FakeClock()
    wm = make(clock)
    for s in SOURCES:
        wm.observe(s, 10_000)
    before = wm.current
    clock.now += 60
    assert not wm.check_idle()
    assert wm.current == before


def test_restore_from_a_checkpoint() -> None:
    clock = FakeClock()
    wm = make(clock, max_ts={"imp": 50_000, "snap": 60_000, "lab": 55_000}, floor=44_000)
    assert wm.current == 44_000
    assert wm.observe("imp", 70_000)
    assert wm.current == 55_000 - 5_001


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("observe"), st.sampled_from(SOURCES), st.integers(0, 1_000)),
        st.tuples(st.just("idle"), st.sampled_from(SOURCES), st.floats(0, 40)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_it_is_always_the_minimum_over_the_active_sources_never_going_back(ops: list[tuple[str, str, float]]) -> None:
    """Against the plain rule, recomputed whenever a source moves on or goes idle."""
    clock = FakeClock()
    wm = make(clock, max_ts={"imp": 300_000, "snap": 200_000, "lab": 100_000})  # e.g. restored
    max_ts = dict.fromkeys(SOURCES, 0) | {"imp": 300_000, "snap": 200_000, "lab": 100_000}
    active = dict.fromkeys(SOURCES, True)
    silent_since = dict.fromkeys(SOURCES, clock.now)
    expected = WATERMARK_START
    for op, source, value in ops:
        if op == "observe":
            t = 1_000 * int(value)
            before = wm.current
            advanced = wm.observe(source, t)
            active[source] = True
            moved = t > max_ts[source]
            max_ts[source] = max(max_ts[source], t)
        else:  # `value` seconds pass; every other source speaks, this one stays silent since it last did
            clock.now += value
            for other in SOURCES:
                if other != source:
                    wm.touch(other)
                    active[other] = True
                    silent_since[other] = clock.now
            before = wm.current
            advanced = wm.check_idle()
            silent = clock.now - silent_since[source] >= 30
            moved = silent and active[source]
            if silent:
                active[source] = False
        lows = [max_ts[s] for s in SOURCES if active[s]]
        if moved and lows:
            expected = max(expected, min(lows) - 5_001)
        assert wm.current == expected
        assert advanced == (wm.current > before)
