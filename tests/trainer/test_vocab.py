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
