"""Keyed state of the sample join: everything the join holds for one ``request_id``.

The runtimes own the store (a Python dict in replay, Flink ``ValueState[bytes]``, a Redis hash) and
only move these objects in and out; :meth:`RequestState.to_row` / :meth:`RequestState.from_row` give
its compact positional form, plain lists of strings and numbers, which the runtimes that need bytes
serialize (``jobs.runtime.state_bytes``).

Per impression and task the join keeps a small status code (see ``OPEN`` … ``CLOSED``) and, while a
decision waits, the label it waits with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from jobs.core.events import FeatureSnapshot, Impression, Label, make_impression, make_label, make_snapshot
from jobs.errors import JobError
from schemas.records import IMPRESSION_FIELDS, LABEL_FIELDS, SNAPSHOT_FIELDS

# Status of one (impression, task) pair.
OPEN = 0  # nothing decided: the NEGATIVE is due when the watermark passes t_i + W
POS_WAIT = 1  # a label with delay <= W was accepted; its POSITIVE waits for the snapshot until t_i + S
LATE_WAIT = 2  # a label with delay > W arrived before t_i + W; decided at t_i + W (NEGATIVE, then late)
NEG = 3  # the NEGATIVE was emitted; a label with delay <= H still makes a LATE_POSITIVE
CLOSED = 4  # nothing more can come out for this pair: any further label is a duplicate

WATERMARK_START = -(2**63)  # before any event (the one definition; docs/join.md)
WATERMARK_END = 2**63 - 1  # the end of a bounded input

# Positional layouts of the events inside the state's row, in schema order (schemas.records), without
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
    """Serialized state that cannot be read (wrong version, corrupt bytes, a malformed row)."""


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

    # -- positional row --------------------------------------------------------------------------
    def to_row(self) -> list[Any]:
        """The state as nested lists (no keys): request id, tasks, snapshot, its watermark, the
        impression rows (fields, status, pending labels) and the orphan labels."""
        snap = self.snapshot
        return [
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

    @classmethod
    def from_row(cls, row: Any) -> RequestState:
        """The state :meth:`to_row` gave (tuples read as lists); raises StateError when malformed."""
        n_imp = len(_IMPRESSION_REST)
        try:
            rid, tasks, snap, snap_wm, imps, orphans = row
            state = cls(rid, tuple(tasks))
            if snap is not None:
                state.snapshot = make_snapshot(rid, *snap)
            state.snapshot_watermark = snap_wm
            for imp_row in imps:
                if len(imp_row) != n_imp + 2:
                    raise ValueError(f"an impression row has {len(imp_row)} items, expected {n_imp + 2}")
                iid = imp_row[0]
                status, pending = imp_row[n_imp], imp_row[n_imp + 1]
                state.impressions[iid] = ImpressionState(
                    make_impression(rid, *imp_row[:n_imp]),
                    list(status),  # a copy: the row may be another state's (to_row shares its lists)
                    None if pending is None else [None if p is None else make_label(rid, iid, *p) for p in pending],
                )
            state.orphans = [make_label(rid, *o) for o in orphans]
        except (ValueError, TypeError, IndexError) as exc:
            raise StateError(f"malformed state row: {exc}") from exc
        return state
