"""Feature layout and the two encoding paths (training: Python vocabularies; serving: lookup tables)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from synth import make_samples

from trainer.config import FeaturesConfig, VocabConfig
from trainer.features import FeatureEncoder, FeatureLookup, FeatureSpec, serving_inputs, signature_name
from trainer.samples import SampleTable, parse_sample
from trainer.state import TrainerState
from trainer.warm_start import warm_start


def table(n: int = 400, seed: int = 0, users: int = 40) -> SampleTable:
    samples, _ = make_samples(n, users=users, items=20, seed=seed)
    return SampleTable([parse_sample(s) for s in samples])


def test_spec_from_data() -> None:
    spec = FeatureSpec.from_table(table(), FeaturesConfig())
    assert [f for f, _ in spec.tracked] == ["user_id", "item_id", "context.page", "sparse.city"]
    assert spec.hashed == (("position", 64),)
    assert [(a, b) for a, b, _ in spec.crosses] == [("user_id", "item_id"), ("item_id", "position")]
    assert spec.dense == ("dense.u_ctr_7d",)
    capacities = dict(spec.tracked)
    assert capacities["user_id"] == 64 and capacities["context.page"] == 16  # data-sized powers of two
    assert FeatureSpec.from_json(spec.to_json()) == spec
    assert list(spec.signature()) == ["user_id", "item_id", "context_page", "sparse_city", "position", "dense_u_ctr_7d"]


def test_include_exclude_and_fixed_capacity() -> None:
    config = FeaturesConfig(exclude=("sparse.city", "dense.u_ctr_7d"), vocab=VocabConfig(capacity=1000))
    spec = FeatureSpec.from_table(table(), config)
    assert dict(spec.tracked) == {"user_id": 1000, "item_id": 1000, "context.page": 1000}
    assert spec.dense == ()


def test_signature_names_are_valid_identifiers() -> None:
    assert signature_name("context.page") == "context_page"
    assert signature_name("sparse.a-b c") == "sparse_a_b_c"
    assert signature_name("9lives") == "f_9lives"


def test_training_and_serving_paths_agree() -> None:
    data = table()
    spec = FeatureSpec.from_table(data, FeaturesConfig(vocab=VocabConfig(admit_after=3)))
    encoder = FeatureEncoder(spec, spec.new_vocabs(3, None))
    prepared = encoder.prepare(data)
    for step, start in enumerate(range(0, len(data), 100)):
        encoder.encode(prepared, np.arange(start, min(start + 100, len(data))), step)
    # the training path's view after training vs the exported tables' view
    held_out = table(200, seed=9, users=80)  # known and new users
    expected = encoder.peek(encoder.prepare(held_out), np.arange(len(held_out)))
    lookup = FeatureLookup.from_vocabs(spec, encoder.vocabs)
    served = lookup({k: tf.constant(v) for k, v in serving_inputs(spec, held_out).items()})
    np.testing.assert_array_equal(served["ids"].numpy(), expected.ids)
    np.testing.assert_allclose(served["dense"].numpy(), expected.dense)
    assert (expected.ids[:, 0] == 0).any() and (expected.ids[:, 0] > 0).any()  # OOV and admitted users


def test_reused_slots_become_resets_of_global_rows() -> None:
    data = table(50)
    spec = FeatureSpec.from_table(
        data, FeaturesConfig(vocab=VocabConfig(capacity=4, admit_after=1, evict_after_steps=2))
    )
    encoder = FeatureEncoder(spec, spec.new_vocabs(1, 2))
    prepared = encoder.prepare(data)
    resets = []
    for step in range(0, 50, 5):
        resets.extend(encoder.encode(prepared, np.arange(step, step + 5), step).resets.tolist())
    offsets = dict(zip(spec.base_fields, spec.base_offsets, strict=True))
    assert resets, "a 3-slot vocabulary over 40 users must reuse slots"
    user_rows = [r for r in resets if r < offsets["item_id"]]
    item_rows = [r for r in resets if offsets["item_id"] <= r < offsets["context.page"]]
    assert user_rows and item_rows and all(0 < r < 4 for r in user_rows)


def test_warm_started_state_keeps_the_vocabulary(tmp_path) -> None:
    from trainer.config import TrainerConfig

    data = table()
    state = TrainerState.create(TrainerConfig(), data)
    prepared = state.prepare(data)
    state.encode(prepared, np.arange(len(data)))
    path = state.save_checkpoint(tmp_path / "ck")
    restored = warm_start(tmp_path / "ck", TrainerConfig())
    assert path.endswith("ckpt-0")
    assert restored.vocabs["user_id"].items() == state.vocabs["user_id"].items()
