"""RequestState's positional row: plain lists, exact round trip, malformed rows rejected."""

from __future__ import annotations

import copy

import pytest

from jobs.core import WATERMARK_START, Event, RequestState, SampleJoin, StateError
from tests.jobs.core.helpers import HOUR, SEC, T0, imp, join_config, lab, snap


def busy_state() -> RequestState:
    join = SampleJoin(join_config())
    state = None
    stream: list[Event] = [snap("r1", T0, {"c": "bj", "é": "ü"}, {"x": 0.1, "y": -3.5e-12}), imp("r1", "i1", T0),
              imp("r1", "i2", T0, context={}), lab("r1", "i2", T0 + 11 * 60 * SEC),
              lab("r1", "ghost", T0 + SEC, value=2.0)]
    for e in stream:
        state = join.on_event(state, e, WATERMARK_START).state
    assert state is not None
    return state


def test_row_round_trip_is_exact() -> None:
    state = busy_state()
    row = state.to_row()
    again = RequestState.from_row(row)
    assert again == state
    assert again.to_row() == row


def test_a_state_read_from_a_row_shares_no_mutable_list_with_the_original() -> None:
    state = busy_state()
    again = RequestState.from_row(state.to_row())
    again.impressions["i1"].status[0] = 4
    assert state.impressions["i1"].status == [0]


@pytest.mark.parametrize(
    "damage",
    [
        lambda row: row[:-1],  # a part missing
        lambda row: [*row[:4], [row[4][0][:-1]], row[5]],  # an impression row one item short
        lambda row: [row[0], row[1], 7, *row[3:]],  # a snapshot that is not a row
        lambda row: "not a row",
    ],
)
def test_malformed_rows_are_rejected(damage) -> None:  # type: ignore[no-untyped-def]
    row = damage(copy.deepcopy(busy_state().to_row()))
    with pytest.raises(StateError, match="malformed state row"):
        RequestState.from_row(row)


def test_a_restored_state_continues_like_the_original() -> None:
    join = SampleJoin(join_config())
    state = busy_state()
    restored = RequestState.from_row(copy.deepcopy(state.to_row()))
    a = join.on_timer(state, T0 + HOUR, T0 + HOUR)
    b = join.on_timer(restored, T0 + HOUR, T0 + HOUR)
    assert [s.to_json() for s in a.samples] == [s.to_json() for s in b.samples]
    assert [u.to_json() for u in a.unmatched] == [u.to_json() for u in b.unmatched]
