"""Dynamic vocabulary: admission, eviction, slot reuse, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from trainer.vocab import DynamicVocab, VocabSet, vocab_state


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
