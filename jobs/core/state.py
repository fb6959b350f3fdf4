"""Keyed state of the sample join: everything the join holds for one ``request_id``.

The runtimes own the store (a Python dict in replay, Flink ``ValueState[bytes]``, a Redis hash) and
only move these objects in and out; :meth:`RequestState.to_bytes` / :meth:`RequestState.from_bytes`
give a compact, versioned byte form for the stores that need bytes.

Per impression and task the join keeps a small status code (see ``OPEN`` … ``CLOSED``) and, while a
decision waits, the label it waits with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from jobs.core import _json
from jobs.core.events import FeatureSnapshot, Impression, Label, make_impression, make_label, make_snapshot
from jobs.errors import JobError
from schemas.records import IMPRESSION_FIELDS, LABEL_FIELDS, SNAPSHOT_FIELDS

# Status of one (impression, task) pair.
OPEN = 0  # nothing decided: the NEGATIVE is due when the watermark passes t_i + W
POS_WAIT = 1  # a label with delay <= W was accepted; its POSITIVE waits for the snapshot until t_i + S
LATE_WAIT = 2  # a label with delay > W arrived before t_i + W; decided at t_i + W (NEGATIVE, then late)
NEG = 3  # the NEGATIVE was emitted; a label with delay <= H still makes a LATE_POSITIVE
CLOSED = 4  # nothing more can come out for this pair: any further label is a duplicate

STATE_FORMAT_VERSION = 1

WATERMARK_START = -(2**63)  # before any event (the one definition; docs/join.md)
WATERMARK_END = 2**63 - 1  # the end of a bounded input

# Positional layouts of the events inside the state's bytes, in schema order (schemas.records), without
# the ids the state already holds: request_id everywhere, impression_id in an impression's pending labels.
_IMPRESSION_REST = IMPRESSION_FIELDS[1:]
_SNAPSHOT_REST = SNAPSHOT_FIELDS[1:]
_LABEL_REST = LABEL_FIELDS[1:]
_PENDING_REST = LABEL_FIELDS[2:]
assert IMPRESSION_FIELDS[:2] == ("request_id", "impression_id") and SNAPSHOT_FIELDS[0] == "request_id"
assert LABEL_FIELDS[:2] == ("request_id", "impression_id")
_impression_rest = attrgetter(*_IMPRESSION_REST)
_snapshot_rest = attrgetter(*_SNAPSHOT_REST)
_label_rest = attrgetter(*_LABEL_REST)
_pending_rest = attrgetter(*_PENDING_REST)


class StateError(JobError):
    """Serialized state that cannot be read (wrong version, corrupt bytes)."""


@dataclass(slots=True)
class ImpressionState:
    impression: Impression
    status: list[int]  # one per task, in the order of the state's ``tasks``
    pending: list[Label | None] | None  # per task, the label a POS_WAIT / LATE_WAIT pair waits with


@dataclass(slots=True)
class RequestState:
    request_id: str
    tasks: tuple[str, ...]  # task names the per-impression lists are indexed by
    snapshot: FeatureSnapshot | None = None  # the first feature snapshot of the request (first wins)
    snapshot_watermark: int = WATERMARK_START  # the watermark when it arrived
    impressions: dict[str, ImpressionState] = field(default_factory=dict)
    orphans: list[Label] = field(default_factory=list)  # labels whose impression has not arrived

    def is_empty(self) -> bool:
        return not self.impressions and not self.orphans and self.snapshot is None

    # -- bytes ---------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Compact, versioned form: one version byte, then a JSON array (orjson)."""
        snap = self.snapshot
        body: list[Any] = [
            self.request_id,
            list(self.tasks),
            None if snap is None else _snapshot_rest(snap),
            self.snapshot_watermark,
            [
                [
                    *_impression_rest(s.impression),
                    s.status,
                    None if s.pending is None else [None if p is None else _pending_rest(p) for p in s.pending],
                ]
                for s in self.impressions.values()
            ],
            [_label_rest(o) for o in self.orphans],
        ]
        return bytes((STATE_FORMAT_VERSION,)) + _json.dumps(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> RequestState:
        if not data:
            raise StateError("empty state bytes")
        if data[0] != STATE_FORMAT_VERSION:
            raise StateError(f"unknown state format version {data[0]} (this code reads {STATE_FORMAT_VERSION})")
        n_imp = len(_IMPRESSION_REST)
        try:
            rid, tasks, snap, snap_wm, imps, orphans = _json.loads(data[1:])
            state = cls(rid, tuple(tasks))
            if snap is not None:
                state.snapshot = make_snapshot(rid, *snap)
            state.snapshot_watermark = snap_wm
            for row in imps:
                if len(row) != n_imp + 2:
                    raise ValueError(f"an impression row has {len(row)} items, expected {n_imp + 2}")
                iid = row[0]
                status, pending = row[n_imp], row[n_imp + 1]
                state.impressions[iid] = ImpressionState(
                    make_impression(rid, *row[:n_imp]),
                    status,
                    None if pending is None else [None if p is None else make_label(rid, iid, *p) for p in pending],
                )
            state.orphans = [make_label(rid, *o) for o in orphans]
        except (ValueError, TypeError, IndexError, _json.JSONDecodeError) as exc:
            raise StateError(f"corrupt state bytes ({len(data)} bytes): {exc}") from exc
        return state
