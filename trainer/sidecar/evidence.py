"""Matured impressions: what the gate and the rollback decide on.

One entry per impression (keyed by ``impression_id``), made when its first sample (POSITIVE or
NEGATIVE) arrives: the impression time, the label, the training model's progressive prediction (made
before it trained on the sample), the prediction of the version then current and that version's
number, and the sample's arrival index (distinct samples trained before it). A LATE_POSITIVE sets its
impression's label to 1: a NEGATIVE corrected by its LATE_POSITIVE counts once, as clicked. One whose
impression is no longer remembered is only counted (``late_unmatched``).

An impression is evidence once it is ``maturity`` old in stream time (the largest emit time seen):
stream time - impression time >= maturity. So a burst of LATE_POSITIVEs (at night, after an outage,
on a backlog) changes the labels of impressions already in the evidence, never which impressions it
holds, and every candidate and reference is judged on the same impressions with the same labels.
Clicks that come after ``maturity`` are missing from the labels of both sides alike; the delay model
of the delayed-feedback correction (``trainer/losses/pending.py``, the share ``F(age)`` of late clicks
arrived by an age) could refine this: weight each impression by ``F(age)``, or add to the mean label
the clicks still expected, sum of ``p_i * (1 - F(age_i))`` times the late share; kept apart here so the
gate does not move when that estimate does.

Memory is bounded: a ring of ``capacity`` entries, the oldest forgotten first; with ``share`` < 1 only
impressions whose id hashes below it are remembered (the same ones after a restart), for traffic too
heavy to hold ``maturity`` of it. The ring is saved with each checkpoint (:meth:`to_arrays`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.samples import LATE_POSITIVE, MISSING_TIME, POSITIVE

if TYPE_CHECKING:
    from trainer.samples import Sample

_HASH_RANGE = 1 << 32
_COLUMNS = {  # name -> (dtype, empty value)
    "impression_ms": (np.int64, 0),
    "arrival": (np.int64, 0),
    "first_positive": (np.bool_, False),
    "label": (np.int8, 0),
    "late_delay_ms": (np.int64, -1),  # the LATE_POSITIVE's delay; -1 without one
    "progressive": (np.float32, np.nan),
    "current": (np.float32, np.nan),  # NaN: no version was current
    "version": (np.int32, 0),  # the version that scored ``current``; 0: none
}


class Evidence:
    def __init__(self, capacity: int, share: float = 1.0):
        self.capacity = capacity
        self.share = share
        self.columns: dict[str, np.ndarray] = {
            name: np.full(capacity, empty, dtype) for name, (dtype, empty) in _COLUMNS.items()
        }
        self.ids: list[str | None] = [None] * capacity
        self.index: dict[str, int] = {}
        self.head = 0  # the next slot written
        self.size = 0
        self.stream_ms = MISSING_TIME  # the largest emit time seen
        self.late_unmatched = 0  # LATE_POSITIVEs whose impression is not remembered
        self.untimed = 0  # first samples without an impression time (never evidence)

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        samples: Sequence[Sample],
        times: dict[str, np.ndarray],
        progressive: np.ndarray,
        current: np.ndarray | None,
        version: int | None,
        first_index: int,
    ) -> None:
        """Fold one trained batch in: ``times`` are the batch's event-time columns (SampleTable.times),
        ``first_index`` the distinct samples trained before it."""
        emit, impression = times["emit_time_ms"], times["impression_time_ms"]
        if emit.size:
            self.stream_ms = max(self.stream_ms, int(emit.max()))  # MISSING_TIME is -1: never the max
        ids, index, capacity, share = self.ids, self.index, self.capacity, self.share
        impression_at, emit_at = impression.tolist(), emit.tolist()
        rows: list[int] = []  # batch rows of new entries
        slots: list[int] = []
        late: list[tuple[int, int]] = []  # (slot, delay) of LATE_POSITIVEs found
        head = self.head
        for i, sample in enumerate(samples):
            iid = sample.impression_id
            if iid is None or (share < 1.0 and zlib.crc32(iid.encode()) >= share * _HASH_RANGE):
                continue
            if sample.attribution == LATE_POSITIVE:
                slot = index.get(iid)
                if slot is None:
                    self.late_unmatched += 1
                else:
                    delay = sample.delay_ms
                    late.append((slot, delay if delay is not None else max(0, emit_at[i] - impression_at[i])))
                continue
            if impression_at[i] == MISSING_TIME:
                self.untimed += 1
                continue
            if iid in index:  # a first sample seen twice (a replay beyond the dedup): the first one stays
                continue
            old = ids[head]
            if old is not None:
                del index[old]
            ids[head] = iid
            index[iid] = head
            rows.append(i)
            slots.append(head)
            head = (head + 1) % capacity
        self.head = head
        self.size = min(self.size + len(rows), capacity)
        if rows:
            self._write(np.array(rows), np.array(slots), samples, times, progressive, current, version, first_index)
        if late:
            at = np.array([slot for slot, _ in late])
            self.columns["label"][at] = 1
            self.columns["late_delay_ms"][at] = [delay for _, delay in late]

    def _write(self, rows: np.ndarray, slots: np.ndarray, samples: Sequence[Sample], times: dict[str, np.ndarray],
               progressive: np.ndarray, current: np.ndarray | None, version: int | None, first_index: int) -> None:
        cols = self.columns
        attribution = np.fromiter((samples[i].attribution for i in rows), np.int8, rows.size)
        cols["impression_ms"][slots] = times["impression_time_ms"][rows]
        cols["arrival"][slots] = first_index + rows
        cols["first_positive"][slots] = attribution == POSITIVE
        cols["label"][slots] = np.fromiter((samples[i].label for i in rows), np.int8, rows.size)
        cols["late_delay_ms"][slots] = -1
        cols["progressive"][slots] = np.asarray(progressive)[rows]
        cols["current"][slots] = np.nan if current is None else np.asarray(current)[rows]
        cols["version"][slots] = version or 0

    # -- reading -----------------------------------------------------------------------------------

    def order(self) -> np.ndarray:
        """The occupied slots, oldest arrival first."""
        start = (self.head - self.size) % self.capacity
        return (start + np.arange(self.size)) % self.capacity

    def matured(self, maturity_ms: int, last: int | None = None) -> np.ndarray:
        """Slots of the impressions at least ``maturity_ms`` old in stream time, oldest first; the
        last ``last`` of them when given."""
        if self.stream_ms == MISSING_TIME:
            return np.zeros(0, np.int64)
        slots = self.order()
        slots = slots[self.columns["impression_ms"][slots] <= self.stream_ms - maturity_ms]
        return slots if last is None else slots[-last:]

    def take(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        return {name: column[slots] for name, column in self.columns.items()}

    # -- saved with the checkpoint -----------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        slots = self.order()
        out = {f"evidence_{name}": column[slots] for name, column in self.columns.items()}
        out["evidence_ids"] = np.array([str(self.ids[s]).encode() for s in slots], dtype=bytes)
        out["evidence_scalars"] = np.array(
            [self.stream_ms, self.late_unmatched, self.untimed], np.int64
        )
        return out

    def restore(self, arrays: Any) -> None:
        """The ring saved by :meth:`to_arrays` (the newest ``capacity`` entries when it was larger)."""
        ids = [bytes(x).decode() for x in arrays["evidence_ids"]][-self.capacity :]
        n = len(ids)
        for name, column in self.columns.items():
            column[:n] = arrays[f"evidence_{name}"][-n:] if n else column[:0]
            column[n:] = _COLUMNS[name][1]
        self.ids = [*ids, *([None] * (self.capacity - n))]
        self.index = {iid: slot for slot, iid in enumerate(ids)}
        self.size, self.head = n, n % self.capacity
        scalars = [int(x) for x in arrays["evidence_scalars"]]
        if len(scalars) == 5:  # the first layout also held the stream's start and window, kept elsewhere now
            scalars = [scalars[0], scalars[3], scalars[4]]
        self.stream_ms, self.late_unmatched, self.untimed = scalars
