"""Dynamic vocabularies: ID -> embedding slot, with frequency admission and idle eviction (docs/trainer.md).

Slot 0 of every field is the shared OOV slot. An ID gets its own slot on its ``admit_after``-th
sighting (before that it maps to OOV); a slot whose ID has not been seen for ``evict_after`` steps
is freed by the next sweep (sweeps run every ``evict_after // 8`` steps, and whenever a field is
full), and is handed out again lowest-first. A slot handed out a second time is reported as
*reused*: the model must re-initialise that embedding row (and its optimizer state) before the
step that uses it. Everything is deterministic: it depends only on the order of lookups.

Per ID it keeps what tuning admission and eviction needs (``python -m trainer embeddings``): each
admitted ID's sightings (its pending ones included) and last step seen, each pending ID's sightings and
last step, and counters of admissions, evictions and refusals. On the hot path that is one scatter of
the batch's slots per field; nothing per key unless a key is new.

**Growable, bounded memory** (:meth:`VocabSet.set_budget`, ``features.vocab.memory_budget_mb``): a
field that is full and has nothing idle to evict doubles its capacity, as long as every tracked
field's slots together fit the budget (each slot costs its model rows with their optimizer slots, and
the vocabulary's own bytes for an admitted and a pending ID); at the budget, the least recently seen
IDs are evicted (``displaced``) to admit new ones, and pending IDs beyond the field's capacity are
forgotten, least recently seen first. Without a budget the capacity is fixed, a full field refuses
admissions (``rejected``) and pending IDs are bounded only by the idle sweep.

The state is saved with the checkpoint through :class:`VocabState`, a ``tf.train`` Python-state object,
and in the export's ``trainer.json``. Format 2 adds the sightings of admitted IDs; a format-1
vocabulary (saved before them) loads with ``admit_after`` sightings per admitted ID, the fewest it can
have had.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any

import numpy as np

VOCAB_FORMAT = 2
READABLE_FORMATS = (1, 2)
# Bytes the vocabulary itself holds per admitted ID (its dict entry, key string, slot arrays) and per
# pending ID (dict entry, key, counts), for keys of ~10-20 characters; measured by
# tests/trainer/test_vocab.py (tracemalloc) and the soak (python -m trainer.bench.vocab_soak).
SLOT_BYTES = 250
PENDING_BYTES = 300
MAX_CAPACITY = 1 << 30  # slots of one field (int32 ids, with room for the other fields' rows)
MIN_PENDING = 1024  # pending IDs a bounded field may keep however small its capacity
DISPLACE_SHARE = 64  # at the budget, a full field frees capacity // DISPLACE_SHARE of its slots at once


class DynamicVocab:
    """One field's vocabulary."""

    def __init__(self, capacity: int, admit_after: int = 1, evict_after: int | None = None):
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2 (OOV + one slot), got {capacity}")
        if admit_after < 1:
            raise ValueError(f"admit_after must be at least 1, got {admit_after}")
        self.capacity = capacity
        self.admit_after = admit_after
        self.evict_after = evict_after
        self._slot_of: dict[str, int] = {}
        self._key_of: list[str | None] = [None] * capacity
        self._last_seen = np.full(capacity, -1, np.int64)
        self._sightings = np.zeros(capacity, np.int64)  # per slot: its ID's sightings, pending ones included
        self._high_water = 1  # slots >= this were never handed out
        self._free: list[int] = []  # evicted slots (< high water), a min-heap
        self._pending: dict[str, list[int]] = {}  # key -> [sightings, last step seen]
        self._last_sweep = 0
        self.admitted = 0
        self.evicted = 0  # slots freed: idle, or displaced
        self.rejected = 0  # admissions refused because the field was full
        self.displaced = 0  # of the evicted: the least recently seen, freed for room at the budget
        self.forgotten = 0  # pending IDs dropped, least recently seen first, beyond a bounded field's room
        # Growth under a memory budget (VocabSet.set_budget): the capacity granted for a wanted one;
        # None: a fixed capacity (today's behaviour without a budget).
        self.room: Callable[[int], int] | None = None

    # -- lookups -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, key: str) -> bool:
        return key in self._slot_of

    def slot(self, key: str) -> int:
        """The key's slot without counting a sighting (0 when not admitted)."""
        return self._slot_of.get(key, 0)

    def lookup(
        self, keys: Sequence[str], step: int, sightings: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[int]]:
        """Slots for ``keys`` seen at ``step``; and the slots reused by this call.

        Each key counts as a sighting toward admission unless ``sightings`` (a bool per key) says
        otherwise (a LATE_POSITIVE is not a new sighting: its impression was counted with its NEGATIVE).
        """
        self._maybe_sweep(step)
        slot_of = self._slot_of
        known = [slot_of.get(key) for key in keys]
        reused: list[int] = []
        counted = None if sightings is None else np.asarray(sightings, bool)
        if None not in known:  # the common case: no sighting, so nothing admitted or evicted
            out = np.array(known, np.int32)
        else:  # in order: an admission may evict a key that comes later in ``keys``
            # the keys already known were seen now: no eviction below may take their slots
            self._last_seen[[s for s in known if s is not None]] = step
            counted = np.ones(len(keys), bool) if counted is None else counted.copy()
            out = np.zeros(len(keys), np.int32)
            for i, key in enumerate(keys):
                slot = slot_of.get(key)
                if slot is None:
                    if counted[i]:
                        slot = self._sighting(key, step, reused)
                        counted[i] = False  # counted by _sighting (as pending, or as the new slot's start)
                    else:
                        slot = 0
                out[i] = slot
        used = out > 0
        self._last_seen[out[used]] = step
        np.add.at(self._sightings, out[used if counted is None else used & counted], 1)
        return out, reused

    def _sighting(self, key: str, step: int, reused: list[int]) -> int:
        """A sighting of a key without a slot: counted as pending, or admitted (its slot returned)."""
        count = 1
        if self.admit_after > 1:
            pending = self._pending.pop(key, None)  # re-inserted last: the dict is in last-seen order
            if pending is None:
                self._pending[key] = [1, step]
                if self.room is not None:
                    self._bound_pending()
                return 0
            pending[0] += 1
            pending[1] = step
            self._pending[key] = pending
            count = pending[0]
            if count < self.admit_after:
                return 0
        slot = self._allocate(step)
        if slot == 0:
            self.rejected += 1
            return 0
        self._pending.pop(key, None)
        if slot < self._high_water:
            reused.append(slot)
        else:
            self._high_water = slot + 1
        self._slot_of[key] = slot
        self._key_of[slot] = key
        self._last_seen[slot] = step
        self._sightings[slot] = count
        self.admitted += 1
        return slot

    def _allocate(self, step: int) -> int:
        if not self._free and self._high_water >= self.capacity:
            if step > self._last_sweep:  # a second sweep in one step finds nothing: idleness moves with the step
                self.evict_idle(step)
            if not self._free and self.room is not None:
                granted = min(self.room(2 * self.capacity), MAX_CAPACITY)
                if granted > self.capacity:
                    self._grow(granted)
                else:
                    self._displace(step)
        if self._free:
            return heapq.heappop(self._free)
        if self._high_water < self.capacity:
            return self._high_water
        return 0

    # -- growth and bounds -------------------------------------------------------------------------

    def _grow(self, capacity: int) -> None:
        """Room for ``capacity`` slots (the model lays its tables out again before the next step)."""
        added = capacity - self.capacity
        self._key_of.extend([None] * added)
        self._last_seen = np.concatenate([self._last_seen, np.full(added, -1, np.int64)])
        self._sightings = np.concatenate([self._sightings, np.zeros(added, np.int64)])
        self.capacity = capacity

    def _displace(self, step: int) -> None:
        """At the budget: free the least recently seen slots (never one seen at ``step``, which this
        lookup may already have handed out)."""
        seen = self._last_seen[1:]
        candidates = np.flatnonzero((seen >= 0) & (seen < step)) + 1
        if candidates.size == 0:
            return
        count = min(candidates.size, max(1, self.capacity // DISPLACE_SHARE))
        oldest = candidates[np.argpartition(self._last_seen[candidates], count - 1)[:count]]
        self._free_slots(sorted(int(s) for s in oldest))
        self.displaced += count

    def _bound_pending(self) -> None:
        """Forget the least recently seen pending IDs beyond the field's room (in batches: the dict is
        rebuilt once a quarter over, which keeps its memory compact too)."""
        limit = max(self.capacity, MIN_PENDING)
        if len(self._pending) > limit + limit // 4:
            drop = len(self._pending) - limit
            self._pending = dict(islice(self._pending.items(), drop, None))
            self.forgotten += drop

    # -- eviction ----------------------------------------------------------------------------------

    def _maybe_sweep(self, step: int) -> None:
        if self.evict_after is not None and step - self._last_sweep >= max(1, self.evict_after // 8):
            self.evict_idle(step)

    def evict_idle(self, step: int) -> list[int]:
        """Free every slot not seen for more than ``evict_after`` steps; returns the freed slots."""
        self._last_sweep = step
        if self.evict_after is None:
            return []
        cutoff = step - self.evict_after
        idle = np.flatnonzero((self._last_seen >= 0) & (self._last_seen < cutoff))
        freed = [int(s) for s in idle if s > 0]
        self._free_slots(freed)
        if self._pending:
            stale = [k for k, (_, seen) in self._pending.items() if seen < cutoff]
            for key in stale:
                del self._pending[key]
        return freed

    def _free_slots(self, slots: list[int]) -> None:
        for slot in slots:
            key = self._key_of[slot]
            self._key_of[slot] = None
            if key is not None:
                del self._slot_of[key]
            self._last_seen[slot] = -1
            self._sightings[slot] = 0
            heapq.heappush(self._free, slot)
        self.evicted += len(slots)

    # -- export and persistence --------------------------------------------------------------------

    def items(self) -> tuple[list[str], list[int]]:
        """The admitted keys and their slots, in slot order (what the exported lookup table holds)."""
        pairs = sorted((slot, key) for key, slot in self._slot_of.items())
        return [k for _, k in pairs], [s for s, _ in pairs]

    def id_stats(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The admitted keys (in slot order), their sightings and their last steps seen."""
        keys, slots = self.items()
        index = np.asarray(slots, np.int64)
        return keys, self._sightings[index].copy(), self._last_seen[index].copy()

    def pending_stats(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The pending keys (seen, not admitted yet), their sightings and their last steps seen."""
        keys = list(self._pending)
        values = np.asarray(list(self._pending.values()), np.int64).reshape(-1, 2)
        return keys, values[:, 0].copy(), values[:, 1].copy()

    def stats(self) -> dict[str, int]:
        return {
            "size": len(self._slot_of),
            "capacity": self.capacity,
            "pending": len(self._pending),
            "admitted": self.admitted,
            "evicted": self.evicted,
            "rejected": self.rejected,
            "displaced": self.displaced,
            "forgotten": self.forgotten,
        }

    def to_json(self) -> dict[str, Any]:
        keys, slots = self.items()
        return {
            "capacity": self.capacity,
            "admit_after": self.admit_after,
            "evict_after": self.evict_after,
            "high_water": self._high_water,
            "free": sorted(self._free),
            "keys": keys,
            "slots": slots,
            "last_seen": [int(self._last_seen[s]) for s in slots],
            "sightings": [int(self._sightings[s]) for s in slots],
            "pending": [[k, c, s] for k, (c, s) in self._pending.items()],
            "last_sweep": self._last_sweep,
            "counters": [self.admitted, self.evicted, self.rejected, self.displaced, self.forgotten],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DynamicVocab:
        vocab = cls(int(data["capacity"]), int(data["admit_after"]), data["evict_after"])
        vocab._high_water = int(data["high_water"])
        vocab._free = [int(s) for s in data["free"]]
        heapq.heapify(vocab._free)
        # format 1 kept no sightings of admitted IDs: each had at least admit_after
        sightings = data.get("sightings") or [vocab.admit_after] * len(data["keys"])
        for key, slot, seen, count in zip(data["keys"], data["slots"], data["last_seen"], sightings, strict=True):
            vocab._slot_of[key] = slot
            vocab._key_of[slot] = key
            vocab._last_seen[slot] = seen
            vocab._sightings[slot] = count
        vocab._pending = {k: [int(c), int(s)] for k, c, s in data["pending"]}
        vocab._last_sweep = int(data["last_sweep"])
        counters = [int(x) for x in data["counters"]] + [0, 0]  # format 1: no displaced, forgotten
        vocab.admitted, vocab.evicted, vocab.rejected, vocab.displaced, vocab.forgotten = counters[:5]
        return vocab


@dataclass(frozen=True)
class MemoryBudget:
    """What the tracked fields may hold together: ``total_bytes``, each slot of a field costing its
    model rows (``row_bytes``: its tables and their optimizer slots, per row) and the vocabulary's
    own bytes for an admitted and a pending ID."""

    total_bytes: int
    row_bytes: dict[str, int]

    def slot_bytes(self, field: str) -> int:
        return self.row_bytes[field] + SLOT_BYTES + PENDING_BYTES


class VocabSet:
    """The vocabularies of all tracked fields, by field name."""

    def __init__(self, vocabs: dict[str, DynamicVocab]):
        self.vocabs = dict(vocabs)
        self.budget: MemoryBudget | None = None

    def set_budget(self, budget: MemoryBudget | None) -> None:
        """Let the fields grow within ``budget`` (and bound them at it); None: fixed capacities."""
        self.budget = budget
        for name, vocab in self.vocabs.items():
            vocab.room = None if budget is None else partial(self._room, name)

    def _room(self, field: str, wanted: int) -> int:
        """The capacity ``field`` may have, up to ``wanted``, with the other fields as they are."""
        assert self.budget is not None
        others = sum(v.capacity * self.budget.slot_bytes(n) for n, v in self.vocabs.items() if n != field)
        return min(wanted, (self.budget.total_bytes - others) // self.budget.slot_bytes(field))

    def held_bytes(self) -> int | None:
        """What the fields' capacities hold by the budget's count (None without a budget)."""
        if self.budget is None:
            return None
        return sum(v.capacity * self.budget.slot_bytes(n) for n, v in self.vocabs.items())

    def capacities(self) -> dict[str, int]:
        return {name: v.capacity for name, v in self.vocabs.items()}

    def replace(self, other: VocabSet) -> None:
        """Take ``other``'s vocabularies (a restored checkpoint's), under this set's budget."""
        self.vocabs = other.vocabs
        self.set_budget(self.budget)

    def __getitem__(self, field: str) -> DynamicVocab:
        return self.vocabs[field]

    def to_json(self) -> dict[str, Any]:
        return {"format": VOCAB_FORMAT, "fields": {name: v.to_json() for name, v in self.vocabs.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VocabSet:
        if data.get("format") not in READABLE_FORMATS:
            found = data.get("format")
            raise ValueError(f"unsupported vocabulary format {found!r}, expected one of {READABLE_FORMATS}")
        return cls({name: DynamicVocab.from_json(v) for name, v in data["fields"].items()})

    def stats(self) -> dict[str, dict[str, int]]:
        return {name: v.stats() for name, v in self.vocabs.items()}


def vocab_state(vocabs: VocabSet) -> Any:
    """A ``tf.train.Checkpoint`` dependency that saves and restores ``vocabs`` in place."""
    import tensorflow as tf

    class VocabState(tf.train.experimental.PythonState):
        def serialize(self) -> str:
            return json.dumps(vocabs.to_json(), separators=(",", ":"))

        def deserialize(self, string_value: Any) -> None:
            text = string_value.decode() if isinstance(string_value, bytes) else str(string_value)
            vocabs.replace(VocabSet.from_json(json.loads(text)))

    return VocabState()
