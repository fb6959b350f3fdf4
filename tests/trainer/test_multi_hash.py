"""Multi-hash embeddings: the collision measure, the hashes, the config, the layout's JSON, and a model with
multi-hash fields served by its export exactly as it predicts in memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from models_helpers import config, table, train

from common.config import validate_config
from common.errors import ConfigError
from trainer.bench import hashing
from trainer.config import FeaturesConfig, TrainerConfig
from trainer.export import ExportedModel, export_state
from trainer.features import FeatureEncoder, FeatureLookup, FeatureSpec, MultiHashField, serving_inputs
from trainer.layers import DeepLayer, FieldEmbedding
from trainer.layers.multi_hash import (
    bucket_collisions,
    collision_rate,
    hash_keys,
    multi_hash_ids,
    single_hash_collision_rate,
)
from trainer.state import TrainerState
from trainer.warm_start import warm_start

ROOT = Path(__file__).resolve().parents[2]
MULTI = {"user_id": {"tables": [40, 24], "combine": "sum"}, "item_id": {"tables": [16, 16, 8], "combine": "concat"}}


def zipf_stream(distinct: int, impressions: int, seed: int) -> np.ndarray:
    """A heavy-tailed stream of string IDs: rank r drawn with probability proportional to 1 / r."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, distinct + 1)
    ranks = rng.choice(distinct, impressions, p=weights / weights.sum())
    names = np.array([f"id-{seed}-{r}" for r in range(distinct)])
    return names[ranks]


# -- the collision measure -------------------------------------------------------------------------------


def test_collisions_by_hand() -> None:
    # a and c share both buckets: collided; b shares one with them only: its vector is its own
    buckets = np.array([[1, 2], [1, 3], [1, 2], [4, 4]])
    counts = np.array([10, 5, 1, 2])
    found = bucket_collisions(buckets, counts, [5, 5])
    assert (found.ids, found.collided_ids, found.impressions, found.collided_impressions) == (4, 2, 18, 11)
    assert found.rate == 0.5 and found.weighted_rate == pytest.approx(11 / 18)
    single = bucket_collisions(buckets[:, :1], counts, [5])  # first column alone: a, b and c share bucket 1
    assert (single.collided_ids, single.collided_impressions) == (3, 16)
    # tables too large for one int64 key take the general path, with the same answer
    wide = bucket_collisions(buckets, counts, [2**40, 2**40])
    assert (wide.collided_ids, wide.collided_impressions) == (2, 11)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_multi_hash_collides_far_less_than_single_hashing_at_equal_memory(seed: int) -> None:
    stream = zipf_stream(20_000, 60_000, seed)
    distinct = len(np.unique(stream))
    for rows in (distinct, distinct // 4):  # one row per distinct ID, a quarter of one
        single = single_hash_collision_rate(stream, rows)
        multi = collision_rate(stream, [rows // 2, rows - rows // 2])
        assert single > 0.3 and multi < single / 20, (rows, single, multi)
        weighted_single = single_hash_collision_rate(stream, rows, weighted=True)
        assert collision_rate(stream, [rows // 2, rows - rows // 2], weighted=True) < weighted_single / 20


def test_collision_rate_reads_distinct_ids_with_their_counts_as_the_stream_they_stand_for() -> None:
    stream = zipf_stream(3_000, 9_000, 7)
    ids, counts = np.unique(stream, return_counts=True)
    for weighted in (False, True):
        assert collision_rate(ids, [500, 400], weighted=weighted, counts=counts) == collision_rate(
            stream, [500, 400], weighted=weighted
        )
    integers = np.arange(5_000, dtype=np.int64)  # integer IDs hash as their decimal strings (as served)
    assert collision_rate(integers, [900, 800]) == collision_rate(integers.astype(str), [900, 800])


# -- the hashes --------------------------------------------------------------------------------------------


def test_the_hashes_are_keyed_independent_and_the_same_in_another_process() -> None:
    values = tf.constant([f"user-{i}" for i in range(2_000)])
    buckets = multi_hash_ids(values, [1000, 1000], seed=0).numpy()
    assert buckets.shape == (2_000, 2) and buckets.dtype == np.int32
    assert np.mean(buckets[:, 0] == buckets[:, 1]) < 0.01  # two different hashes of the same tables
    assert np.mean(multi_hash_ids(values, [1000, 1000], seed=1).numpy() == buckets) < 0.01
    assert len({tuple(hash_keys(s, k)) for s in range(4) for k in range(8)}) == 32
    probe = (
        "import tensorflow as tf\n"
        "from trainer.layers.multi_hash import multi_hash_ids\n"
        "print(multi_hash_ids(tf.constant(['user-0', 'user-1', 'user-1999']), [1000, 1000]).numpy().tolist())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == buckets[[0, 1, 1999]].tolist()


def test_the_hash_keys_are_pinned() -> None:
    # Part of every saved model's layout: a change re-buckets the IDs of every export.
    assert hash_keys(0, 0) == [7070836379803831727, 1227844342346046657]
    assert hash_keys(3, 1) == [4253652889204118731, 6762955539682377832]


# -- the config and the layout ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("multi_hash", "expected"),
    [
        ({"user_id": {"tables": [100]}}, "features.multi_hash.user_id.tables: Tuple should have at least 2 items"),
        ({"user_id": {"tables": [100, 0]}}, "features.multi_hash.user_id.tables.1: Input should be greater than"),
        ({"user_id": {"tables": [8, 8], "combine": "mean"}}, "features.multi_hash.user_id.combine: Input should be"),
        ({"user_id": {"tables": [8, 8], "k": 2}}, "features.multi_hash.user_id.k: Extra inputs are not permitted"),
        ({"position": {"tables": [8, 8]}}, "'position' is both in features.hashed and in features.multi_hash"),
        ({"dense.x": {"tables": [8, 8]}}, "cannot hash 'dense.x' into sub-tables: expected a categorical field"),
    ],
)
def test_a_bad_multi_hash_config_is_one_line(multi_hash: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config({"features": {"multi_hash": multi_hash}}, TrainerConfig, source="trainer.yaml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("invalid config trainer.yaml: ")
    assert expected in message, message


def test_the_layout_of_multi_hash_fields_and_its_json() -> None:
    spec = FeatureSpec.from_table(table(), FeaturesConfig(multi_hash=MULTI))
    assert [f for f, _ in spec.tracked] == ["context.page", "sparse.city"]  # one of tracked, hashed, multi-hash
    assert spec.multi_hash == (
        MultiHashField("user_id", (40, 24), "sum", 0),
        MultiHashField("item_id", (16, 16, 8), "concat", 0),
    )
    assert spec.base_fields[-5:] == ["user_id", "user_id", "item_id", "item_id", "item_id"]
    assert spec.base_sizes[-5:] == [40, 24, 16, 16, 8]
    assert spec.column_groups == [1, 1, 1, 2, 1, 1, 1]  # page, city, position, user (summed), item x 3
    assert list(spec.signature()) == [
        "context_page", "sparse_city", "position", "user_id", "item_id", "dense_u_ctr_7d"
    ]
    assert FeatureSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    old = {k: v for k, v in spec.to_json().items() if k != "multi_hash"}  # saved before multi-hash fields
    assert FeatureSpec.from_json(old).multi_hash == ()


def test_training_and_serving_paths_hash_alike() -> None:
    data = table()
    spec = FeatureSpec.from_table(data, FeaturesConfig(multi_hash=MULTI))
    encoder = FeatureEncoder(spec, spec.new_vocabs(1, None))
    prepared = encoder.prepare(data)
    encoder.encode(prepared, np.arange(len(data)), 0)
    held_out = table(200, seed=9)
    expected = encoder.peek(encoder.prepare(held_out), np.arange(len(held_out)))
    served = FeatureLookup.from_vocabs(spec, encoder.vocabs)(
        {k: tf.constant(v) for k, v in serving_inputs(spec, held_out).items()}
    )
    np.testing.assert_array_equal(served["ids"].numpy(), expected.ids)
    assert np.all(expected.ids < np.array(spec.base_sizes + spec.cross_sizes))


# -- the layers ------------------------------------------------------------------------------------------


def test_a_summed_field_is_the_sum_of_its_rows() -> None:
    layer = FieldEmbedding([5, 3, 4], 0, 2, seed=3, column_groups=[1, 2])
    layer.build()
    table_ = keras.ops.convert_to_numpy(layer.embeddings)
    out = layer(np.array([[4, 1, 2]], np.int32))
    embedded = keras.ops.convert_to_numpy(out["embedded"])
    np.testing.assert_allclose(embedded[0, 0], table_[4])
    np.testing.assert_allclose(embedded[0, 1], table_[5 + 1] + table_[8 + 2], rtol=1e-6)
    assert keras.ops.convert_to_numpy(out["flat"]).shape == (1, layer.width) == (1, 4)
    again = FieldEmbedding([5, 3, 4], 0, 2, seed=3, column_groups=[1, 2])
    again.build()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again.embeddings), table_)  # seeded initialiser
    with pytest.raises(ValueError, match="add up to the 3 id columns"):
        FieldEmbedding([5, 3, 4], column_groups=[2, 2])


@pytest.mark.parametrize(
    "layer",
    [
        FieldEmbedding([5, 3, 4], 2, 3, seed=1, column_groups=[1, 2], name="embedding"),
        DeepLayer([5, 3, 4], 2, 3, [4], seed=1, column_groups=[1, 2], name="deep"),
    ],
)
def test_layers_with_column_groups_round_trip_their_config(layer: keras.layers.Layer) -> None:
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.get_config()["column_groups"] == [1, 2]


# -- a model with multi-hash fields, trained, checkpointed and exported -----------------------------------


@pytest.mark.parametrize("model", ["wide_deep", "dual_dnn", "two_tower"])
def test_the_export_predicts_as_the_model_and_the_checkpoint_restores_it(model: str, tmp_path: Path) -> None:
    cfg = config(model, **{"features.multi_hash": MULTI})
    data = table(800, seed=5)
    state = TrainerState.create(cfg, data)
    assert state.spec.multi_hash  # the model's layout has the multi-hash fields
    train(state, data, 12)
    batch = state.encoder.peek(state.prepare(data), np.arange(len(data)))
    in_memory = 1.0 / (1.0 + np.exp(-state.logits(batch).astype(np.float64)))
    served = ExportedModel(export_state(state, tmp_path / "export")).predict(data)
    np.testing.assert_allclose(served, in_memory, rtol=1e-5, atol=1e-7)
    state.save_checkpoint(tmp_path / "ckpt")
    restored = warm_start(tmp_path / "ckpt", cfg)
    assert restored.spec == state.spec
    np.testing.assert_array_equal(restored.logits(batch), state.logits(batch))


# -- the benchmark -----------------------------------------------------------------------------------------


def test_the_benchmark_runs_small_and_writes_its_figures(tmp_path: Path, capsys) -> None:
    out = tmp_path / "hashing.json"
    argv = ["--ids", "3000", "--stream-ids", "400", "--budgets", "1,0.25", "--batch", "64", "--json", str(out)]
    assert hashing.main(argv) == 0
    result = json.loads(out.read_text())
    printed = capsys.readouterr()
    assert "| rows per ID | scheme |" in printed.out and "[hashing] stream" in printed.err
    assert [b["budget"] for b in result["at_scale"]["budgets"]] == [1.0, 0.25]
    for entry in result["stream"]["budgets"]:
        schemes = entry["schemes"]
        assert list(schemes) == list(hashing.SCHEMES)
        embedding = {s["parameters"]["embedding"] for s in schemes.values()}
        assert embedding == {entry["rows"] * 8}  # equal memory
        assert schemes["multi_hash_sum"]["rate"] < schemes["single"]["rate"]
        assert all(0.0 < s["auc"] < 1.0 for s in schemes.values())


def test_the_benchmark_refuses_a_budget_too_small_for_its_tables(capsys) -> None:
    assert hashing.main(["--ids", "100", "--stream-ids", "10", "--budgets", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "python -m trainer.bench.hashing: error: --budgets 0.1 gives 1 rows for 10 IDs: expected at least 2"
    )
