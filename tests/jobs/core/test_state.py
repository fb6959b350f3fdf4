"""RequestState bytes: compact, versioned, exact round trip."""

from __future__ import annotations

import pytest

from jobs.core import WATERMARK_START, Event, RequestState, SampleJoin, StateError
from jobs.core.state import STATE_FORMAT_VERSION
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


def test_round_trip_is_exact() -> None:
    state = busy_state()
    raw = state.to_bytes()
    assert raw[0] == STATE_FORMAT_VERSION
    again = RequestState.from_bytes(raw)
    assert again == state
    assert again.to_bytes() == raw


def test_state_is_compact() -> None:
    join = SampleJoin(join_config())
    state = join.on_event(None, imp("r1", "i1", T0), WATERMARK_START).state
    assert state is not None
    one = len(state.to_bytes())
    state = join.on_event(state, imp("r1", "i2", T0), WATERMARK_START).state
    assert state is not None
    per_impression = len(state.to_bytes()) - one
    assert per_impression < 80, per_impression


def test_unknown_version_and_corrupt_bytes_are_rejected() -> None:
    raw = busy_state().to_bytes()
    with pytest.raises(StateError, match="unknown state format version 9"):
        RequestState.from_bytes(bytes([9]) + raw[1:])
    with pytest.raises(StateError, match="corrupt"):
        RequestState.from_bytes(raw[:-5])
    with pytest.raises(StateError, match="empty"):
        RequestState.from_bytes(b"")


def test_a_restored_state_continues_like_the_original() -> None:
    join = SampleJoin(join_config())
    state = busy_state()
    restored = RequestState.from_bytes(state.to_bytes())
    a = join.on_timer(state, T0 + HOUR, T0 + HOUR)
    b = join.on_timer(restored, T0 + HOUR, T0 + HOUR)
    assert [s.to_json() for s in a.samples] == [s.to_json() for s in b.samples]
    assert [u.to_json() for u in a.unmatched] == [u.to_json() for u in b.unmatched]
