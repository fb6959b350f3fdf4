"""The join state's byte form (Flink ValueState, Redis): compact, versioned, exact round trip, and
bytes written by earlier releases still restore."""

from __future__ import annotations

import pytest

from jobs.core import WATERMARK_START, RequestState, SampleJoin, StateError
from jobs.runtime.state_bytes import STATE_FORMAT_VERSION, BytesStore, state_from_bytes, state_to_bytes
from tests.jobs.core.helpers import T0, imp, join_config
from tests.jobs.core.test_state import busy_state

# busy_state() as version 1 wrote it (before the byte form moved out of the core): must restore as is.
VERSION_1_BYTES = (
    b'\x01["r1",["click"],[1700000000000,{"c":"bj","\xc3\xa9":"\xc3\xbc"},{"x":0.1,"y":-3.5e-12}],'
    b'-9223372036854775808,[["i1","u1","v1",1700000000000,0,{"page":"feed"},[0],null],'
    b'["i2","u1","v1",1700000000000,0,{},[2],[["click",1700000660000,1.0]]]],[["ghost","click",1700000001000,2.0]]]'
)


def test_round_trip_is_exact() -> None:
    state = busy_state()
    raw = state_to_bytes(state)
    assert raw[0] == STATE_FORMAT_VERSION
    again = state_from_bytes(raw)
    assert again == state
    assert state_to_bytes(again) == raw


def test_version_1_bytes_restore_and_are_written_the_same() -> None:
    assert state_from_bytes(VERSION_1_BYTES) == busy_state()
    assert state_to_bytes(busy_state()) == VERSION_1_BYTES


def test_state_is_compact() -> None:
    join = SampleJoin(join_config())
    state = join.on_event(None, imp("r1", "i1", T0), WATERMARK_START).state
    assert state is not None
    one = len(state_to_bytes(state))
    state = join.on_event(state, imp("r1", "i2", T0), WATERMARK_START).state
    assert state is not None
    per_impression = len(state_to_bytes(state)) - one
    assert per_impression < 80, per_impression


def test_unknown_version_and_corrupt_bytes_are_rejected() -> None:
    raw = state_to_bytes(busy_state())
    with pytest.raises(StateError, match="unknown state format version 9"):
        state_from_bytes(bytes([9]) + raw[1:])
    with pytest.raises(StateError, match="corrupt"):
        state_from_bytes(raw[:-5])
    with pytest.raises(StateError, match=r"corrupt state bytes .*malformed state row"):
        state_from_bytes(b'\x01["r1",["click"]]')
    with pytest.raises(StateError, match="empty"):
        state_from_bytes(b"")


def test_the_strict_store_keeps_bytes_and_gives_equal_states() -> None:
    store = BytesStore()
    state = busy_state()
    store.put("r1", state)
    assert store.data["r1"] == VERSION_1_BYTES
    got = store.get("r1")
    assert got == state and got is not state
    store.delete("r1")
    assert store.get("r1") is None and len(store) == 0


def test_the_strict_store_refuses_a_state_its_bytes_cannot_carry() -> None:
    state = RequestState("r1", ("click",))
    state.snapshot_watermark = (1, 2)  # type: ignore[assignment]  # reads back as a list
    with pytest.raises(AssertionError, match="does not survive"):
        BytesStore().put("r1", state)
