"""The join state's byte form, for the stores that hold bytes (Flink ``ValueState[bytes]``, Redis):
one version byte, then the state's positional row (:meth:`RequestState.to_row`) as JSON (orjson).

Version 1 is the only format so far; a checkpoint written by any release reads back (the tests keep a
version-1 state's bytes). A layout change bumps the version and keeps a reader for the old one.
"""

from __future__ import annotations

from jobs.core.state import RequestState, StateError
from jobs.runtime import _json

STATE_FORMAT_VERSION = 1
_VERSION = bytes((STATE_FORMAT_VERSION,))


def state_to_bytes(state: RequestState) -> bytes:
    return _VERSION + _json.dumps(state.to_row())


def state_from_bytes(data: bytes) -> RequestState:
    """The state of :func:`state_to_bytes`' bytes; raises StateError (wrong version, corrupt bytes)."""
    if not data:
        raise StateError("empty state bytes")
    if data[0] != STATE_FORMAT_VERSION:
        raise StateError(f"unknown state format version {data[0]} (this code reads {STATE_FORMAT_VERSION})")
    try:
        return RequestState.from_row(_json.loads(data[1:]))
    except (_json.JSONDecodeError, StateError) as exc:
        raise StateError(f"corrupt state bytes ({len(data)} bytes): {exc}") from exc


class BytesStore:
    """States serialized at every write, as Flink's ValueState or Redis hold them; every write is
    checked to survive :func:`state_to_bytes` / :func:`state_from_bytes` (the tests' strict mode)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> RequestState | None:
        raw = self.data.get(key)
        return None if raw is None else state_from_bytes(raw)

    def put(self, key: str, state: RequestState) -> None:
        raw = state_to_bytes(state)
        if state_from_bytes(raw) != state:
            raise AssertionError(f"state of {key!r} does not survive state_to_bytes/state_from_bytes")
        self.data[key] = raw

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def __len__(self) -> int:
        return len(self.data)
