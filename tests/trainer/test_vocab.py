"""Dynamic vocabulary: admission, eviction, slot reuse, persistence."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import tensorflow as tf

from trainer.vocab import (
    MIN_PENDING,
    PENDING_BYTES,
    SLOT_BYTES,
    DynamicVocab,
    MemoryBudget,
    VocabSet,
    vocab_state,
)


def test_admission_after_n_sightings() -> None:
    vocab = DynamicVocab(capacity=8, admit_after=3)
    slots, _ = vocab.lookup(["a", "a", "b"], step=0)
    assert slots.tolist() == [0, 0, 0]  # sightings 1 and 2 of a; 1 of b: all OOV
    slots, _ = vocab.lookup(["a", "b", "a"], step=1)
    assert slots.tolist() == [1, 0, 1]  # a's third sighting admits it (slot 1), at once for later rows
    assert vocab.slot("a") == 1 and "b" not in vocab


def test_admit_after_one_admits_immediately_and_is_deterministic() -> None:
    keys = [f"k{i % 7}" for i in range(30)]
    a, b = DynamicVocab(16, 1), DynamicVocab(16, 1)
    assert a.lookup(keys, 0)[0].tolist() == b.lookup(keys, 0)[0].tolist()
    assert sorted(a.items()[1]) == list(range(1, 8))


def test_eviction_frees_idle_slots_and_reports_reuse() -> None:
    vocab = DynamicVocab(capacity=4, admit_after=1, evict_after=10)
    vocab.lookup(["a", "b", "c"], step=0)  # slots 1, 2, 3: full
    for step in range(1, 12):
        vocab.lookup(["a"], step=step)  # b and c idle
    vocab.evict_idle(step=12)
    assert "a" in vocab and "b" not in vocab and "c" not in vocab
    slots, reused = vocab.lookup(["d"], step=12)
    assert slots.tolist() == [2]  # lowest freed slot first
    assert reused == [2]  # handed out before: the model must re-initialise its row
    fresh = DynamicVocab(capacity=8, admit_after=1)
    assert fresh.lookup(["x"], 0)[1] == []  # never-used slots need no reset


def test_periodic_sweep_evicts_without_an_explicit_call() -> None:
    vocab = DynamicVocab(capacity=64, admit_after=1, evict_after=16)
    vocab.lookup(["old"], step=0)
    for step in range(1, 40):
        vocab.lookup(["new"], step=step)
    assert "old" not in vocab and vocab.evicted == 1


def test_full_vocabulary_keeps_new_ids_in_oov() -> None:
    vocab = DynamicVocab(capacity=3, admit_after=1, evict_after=None)
    slots, _ = vocab.lookup(["a", "b", "c"], step=0)
    assert slots.tolist() == [1, 2, 0]
    assert vocab.rejected == 1


def test_a_full_field_sweeps_for_idle_slots_once_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new ID refused by a full field used to sweep every slot (a step of 256 new IDs: 256 sweeps);
    within one step a second sweep cannot find anything the first did not."""
    vocab = DynamicVocab(capacity=64, admit_after=1, evict_after=1000)
    vocab.lookup([f"k{i}" for i in range(63)], step=1)  # full, nothing idle
    sweeps = []
    real = vocab.evict_idle
    monkeypatch.setattr(vocab, "evict_idle", lambda step: sweeps.append(step) or real(step))
    slots, _ = vocab.lookup([f"new{i}" for i in range(256)], step=2)
    assert not slots.any() and vocab.rejected == 256
    assert sweeps == [2]
    vocab.lookup([f"k{i}" for i in range(32)], step=1200)  # the others are idle now
    slots, _ = vocab.lookup([f"later{i}" for i in range(40)], step=1201)
    assert (slots > 0).sum() == 31 and sweeps[-1] == 1201  # the 31 idle slots freed and handed out


def test_pending_counts_expire_with_eviction() -> None:
    vocab = DynamicVocab(capacity=8, admit_after=2, evict_after=5)
    vocab.lookup(["a"], step=0)
    vocab.evict_idle(step=10)
    slots, _ = vocab.lookup(["a"], step=10)
    assert slots.tolist() == [0]  # the earlier sighting was forgotten


def test_json_round_trip_continues_identically() -> None:
    vocab = DynamicVocab(capacity=6, admit_after=2, evict_after=4)
    rng = np.random.default_rng(0)
    for step in range(20):
        vocab.lookup([f"k{x}" for x in rng.integers(0, 9, 5)], step)
    copy = DynamicVocab.from_json(json.loads(json.dumps(vocab.to_json())))
    for step in range(20, 40):
        keys = [f"k{x}" for x in rng.integers(0, 9, 5)]
        a, b = vocab.lookup(keys, step), copy.lookup(keys, step)
        assert a[0].tolist() == b[0].tolist() and a[1] == b[1]
    assert vocab.to_json() == copy.to_json()


def test_vocabulary_is_saved_with_a_tf_checkpoint(tmp_path) -> None:
    vocabs = VocabSet({"user_id": DynamicVocab(8, 1)})
    vocabs["user_id"].lookup(["u1", "u2"], 0)
    path = tf.train.Checkpoint(vocab=vocab_state(vocabs)).save(str(tmp_path / "ckpt"))
    restored = VocabSet({"user_id": DynamicVocab(8, 1)})
    tf.train.Checkpoint(vocab=vocab_state(restored)).restore(path).assert_consumed()
    assert restored["user_id"].items() == (["u1", "u2"], [1, 2])


@pytest.mark.parametrize("bad", [{"capacity": 1}, {"capacity": 4, "admit_after": 0}])
def test_bad_settings_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        DynamicVocab(**bad)


def test_sightings_mask_skips_admission_counts_but_not_lookups() -> None:
    vocab = DynamicVocab(capacity=8, admit_after=2)
    # a NEGATIVE and its LATE_POSITIVE: one impression, one sighting
    slots, _ = vocab.lookup(["a", "a"], step=0, sightings=np.array([True, False]))
    assert slots.tolist() == [0, 0] and "a" not in vocab
    slots, _ = vocab.lookup(["a", "a"], step=1, sightings=np.array([True, False]))
    assert slots.tolist() == [1, 1]  # second impression admits it; the late row gets the slot too


# -- per-ID statistics (python -m trainer embeddings) --------------------------------------------------


def _sightings(vocab: DynamicVocab) -> dict[str, tuple[int, int]]:
    keys, counts, last = vocab.id_stats()
    return {k: (int(c), int(s)) for k, c, s in zip(keys, counts, last, strict=True)}


def test_admitted_ids_count_their_sightings_pending_ones_included() -> None:
    vocab = DynamicVocab(capacity=8, admit_after=3)
    vocab.lookup(["a", "b", "a"], step=0)  # a: 2 pending, b: 1 pending
    assert dict(zip(*vocab.pending_stats()[:2], strict=True)) == {"a": 2, "b": 1}
    vocab.lookup(["a", "a", "c"], step=1)  # a admitted on its 3rd sighting, then a 4th
    vocab.lookup(["a"], step=5)
    assert _sightings(vocab) == {"a": (5, 5)}
    keys, counts, last = vocab.pending_stats()
    assert (keys, counts.tolist(), last.tolist()) == (["b", "c"], [1, 1], [0, 1])


def test_late_positives_are_not_sightings_and_eviction_forgets_the_count() -> None:
    vocab = DynamicVocab(capacity=4, admit_after=1, evict_after=4)
    late = np.array([True, False, False])
    vocab.lookup(["a", "a", "a"], step=0, sightings=late)  # one impression, two late rows
    assert _sightings(vocab) == {"a": (1, 0)}
    vocab.lookup(["b"], step=10)  # the sweep evicts a
    assert "a" not in vocab and vocab.evicted == 1
    vocab.lookup(["a"], step=10)  # admitted again (into a's old slot or another): counted afresh
    assert _sightings(vocab)["a"] == (1, 10)


def test_counting_matches_a_per_key_tally_on_a_random_stream() -> None:
    """Cheap on the hot path (one scatter per batch), and still exactly the per-key tally."""
    vocab = DynamicVocab(capacity=64, admit_after=2, evict_after=None)
    rng = np.random.default_rng(4)
    tally: dict[str, int] = {}
    for step in range(50):
        keys = [f"k{x}" for x in rng.zipf(1.5, 40) % 30]
        for key in keys:
            tally[key] = tally.get(key, 0) + 1
        vocab.lookup(keys, step)
    admitted = {k: c for k, (c, _) in _sightings(vocab).items()}
    pending = dict(zip(*vocab.pending_stats()[:2], strict=True))
    assert {**admitted, **{k: int(c) for k, c in pending.items()}} == tally
    assert all(c >= 2 for c in admitted.values()) and all(c == 1 for c in pending.values())


def test_a_format_1_vocabulary_without_sightings_still_loads() -> None:
    """Checkpoints and exports written before the sightings were kept: each admitted ID gets
    ``admit_after``, the fewest sightings it can have had, and the vocabulary goes on counting."""
    vocab = DynamicVocab(capacity=8, admit_after=2, evict_after=100)
    vocab.lookup(["a", "a", "b", "c", "c", "c"], step=3)
    saved = VocabSet({"user_id": vocab}).to_json()
    assert saved["format"] == 2
    old = json.loads(json.dumps(saved))
    old["format"] = 1
    del old["fields"]["user_id"]["sightings"]
    loaded = VocabSet.from_json(old)["user_id"]
    assert loaded.items() == vocab.items()
    assert _sightings(loaded) == {"a": (2, 3), "c": (2, 3)}
    loaded.lookup(["c"], step=4)
    assert _sightings(loaded)["c"] == (3, 4)
    with pytest.raises(ValueError, match="unsupported vocabulary format 3"):
        VocabSet.from_json({**old, "format": 3})


def test_an_admission_never_evicts_a_key_seen_earlier_in_the_same_batch() -> None:
    vocab = DynamicVocab(capacity=3, admit_after=1, evict_after=16)  # sweeps every 2 steps
    vocab.lookup(["a", "b"], step=0)  # full
    vocab.lookup([], step=16)  # a sweep: nothing idle yet (cutoff 0)
    slots, _ = vocab.lookup(["a", "c"], step=17)  # c's admission frees the idle slots: b's, not a's
    assert slots.tolist() == [1, 2] and vocab.items() == (["a", "c"], [1, 2])


# -- growable, bounded memory ----------------------------------------------------------------------------


def test_a_full_field_grows_when_the_budget_has_room_then_displaces_the_least_recently_seen() -> None:
    vocab = DynamicVocab(capacity=4, admit_after=1, evict_after=None)
    vocab.room = lambda wanted: min(wanted, 8)  # room for 8 slots
    vocab.lookup(["a", "b", "c"], step=0)  # slots 1-3: full
    vocab.lookup(["d"], step=1)  # doubles to 8 rather than refusing
    assert vocab.capacity == 8 and vocab.slot("d") == 4 and vocab.rejected == 0
    vocab.lookup(["e", "f", "g"], step=2)
    vocab.lookup(["a", "c", "d", "e", "f", "g"], step=3)  # b is now the least recently seen
    slots, reused = vocab.lookup(["h"], step=4)
    assert vocab.capacity == 8 and "b" not in vocab and slots.tolist() == [2] and reused == [2]
    assert vocab.displaced == 1 and vocab.evicted == 1 and vocab.rejected == 0


def test_displacement_never_takes_a_slot_seen_in_the_same_lookup() -> None:
    vocab = DynamicVocab(capacity=3, admit_after=1)
    vocab.room = lambda wanted: 3  # no room to grow
    vocab.lookup(["a", "b"], step=0)
    slots, _ = vocab.lookup(["a", "b", "c"], step=1)  # everything was seen at step 1: nothing to displace
    assert slots.tolist() == [1, 2, 0] and vocab.rejected == 1
    slots, _ = vocab.lookup(["a", "c"], step=2)  # b (step 1) is displaced for c, a kept
    assert slots.tolist() == [1, 2] and vocab.items() == (["a", "c"], [1, 2])


def test_a_bounded_field_forgets_the_least_recently_seen_pending_ids() -> None:
    vocab = DynamicVocab(capacity=4, admit_after=2)
    vocab.room = lambda wanted: 4
    vocab.lookup(["keep"], step=0)
    for step in range(1, 2000):
        vocab.lookup([f"new{step}"] + (["keep"] if step % 500 == 0 else []), step)
    assert len(vocab.pending_stats()[0]) <= MIN_PENDING + MIN_PENDING // 4
    assert vocab.forgotten > 0 and "new1" not in vocab.pending_stats()[0]
    assert "keep" in vocab  # seen again before it was forgotten: admitted
    unbounded = DynamicVocab(capacity=4, admit_after=2)
    for step in range(2000):
        unbounded.lookup([f"new{step}"], step)
    assert len(unbounded.pending_stats()[0]) == 2000  # without a budget only the idle sweep bounds it


def test_the_fields_share_one_budget() -> None:
    vocabs = VocabSet({"user_id": DynamicVocab(4, 1), "item_id": DynamicVocab(4, 1)})
    per_slot = MemoryBudget(0, {"user_id": 50, "item_id": 50}).slot_bytes("user_id")
    vocabs.set_budget(MemoryBudget(20 * per_slot, {"user_id": 50, "item_id": 50}))
    vocabs["user_id"].lookup([f"u{i}" for i in range(15)], step=0)  # 4 -> 8 -> 16 slots
    assert vocabs.capacities() == {"user_id": 16, "item_id": 4}
    vocabs["item_id"].lookup(["i0", "i1", "i2"], step=1)
    vocabs["item_id"].lookup(["i3", "i4"], step=2)  # no room to grow: displaces the oldest instead
    assert vocabs.capacities() == {"user_id": 16, "item_id": 4} and vocabs["item_id"].displaced > 0
    assert vocabs.held_bytes() == 20 * per_slot
    restored = VocabSet({})
    restored.set_budget(vocabs.budget)
    restored.replace(VocabSet.from_json(json.loads(json.dumps(vocabs.to_json()))))  # a checkpoint's restore
    assert restored.capacities() == vocabs.capacities() and restored["user_id"].room is not None
    assert restored.to_json() == vocabs.to_json()


@pytest.mark.parametrize("admit_after", [1, 2])
def test_the_budget_counts_at_least_what_the_vocabulary_holds(admit_after: int) -> None:
    """SLOT_BYTES and PENDING_BYTES, what a memory budget charges per admitted and pending ID, cover
    what the vocabulary allocates for them (keys of 20 characters, their strings included)."""
    ids = 20_000
    tracemalloc.start()
    try:
        vocab = DynamicVocab(ids + 1, admit_after)
        for start in range(0, ids, 1000):
            vocab.lookup([f"user-{i:015d}" for i in range(start, start + 1000)], start)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert (len(vocab), len(vocab.pending_stats()[0])) == ((ids, 0) if admit_after == 1 else (0, ids))
    assert held / ids <= (SLOT_BYTES if admit_after == 1 else PENDING_BYTES)
