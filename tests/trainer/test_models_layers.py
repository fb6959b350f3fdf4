"""The layers of the dual DNN and the two tower: values by hand, the pruned table's exactness,
serialisation round trips and seeded initialisers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer.layers import MLP, CrossNetwork, DeepLayer, FieldEmbedding, PrunedTable, Similarity
from trainer.layers.pruned import nonzero_rows, unprune


def numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_cross_network_by_hand() -> None:
    layer = CrossNetwork(num_layers=1)
    x0 = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)
    layer.build(x0.shape)
    w, b = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32), np.array([0.1, -0.2], np.float32)
    layer.kernels[0].assign(w)
    layer.biases[0].assign(b)
    np.testing.assert_allclose(numpy(layer(x0)), x0 * (x0 @ w + b) + x0, rtol=1e-6)
    two = CrossNetwork(num_layers=2, seed=3)
    assert numpy(two(x0)).shape == (2, 2) and len(two.trainable_weights) == 4
    with pytest.raises(ValueError, match="num_layers"):
        CrossNetwork(num_layers=0)


@pytest.mark.parametrize("kind", ["cosine", "dot"])
def test_similarity_by_hand_and_one_user_against_many_items(kind: str) -> None:
    layer = Similarity(kind, init_temperature=0.5, bias_init=-1.0)
    u = np.array([[3.0, 4.0]], np.float32)
    v = np.array([[1.0, 0.0], [0.0, 2.0], [-6.0, 8.0]], np.float32)
    norms = np.linalg.norm(v, axis=1) * 5.0 if kind == "cosine" else 1.0
    expected = (v @ u[0]) / norms / 0.5 - 1.0
    many = numpy(layer(u, v))  # u broadcast against every row of v
    np.testing.assert_allclose(many, expected, rtol=1e-6)
    single = np.concatenate([numpy(layer(u, v[i : i + 1])) for i in range(len(v))])
    np.testing.assert_array_equal(many, single)
    assert numpy(layer(np.zeros((1, 2), np.float32), v)).tolist() == pytest.approx([-1.0] * 3)  # a zero row stays zero
    with pytest.raises(ValueError, match="similarity must be one of"):
        Similarity("euclid")


def test_pruned_table_looks_up_exactly_as_the_full_table() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(10, 3)).astype(np.float32)
    table[[0, 2, 3, 9]] = 0.0
    pruned = PrunedTable.from_table(table, name="pruned")
    assert pruned.kept == 6 and nonzero_rows(table).tolist() == [1, 4, 5, 6, 7, 8]
    rows = np.array([[0, 1, 2], [9, 8, 3], [5, 5, 4]], np.int32)
    np.testing.assert_array_equal(numpy(pruned.lookup(rows)), table[rows])
    assert pruned.nbytes() == 7 * 3 * 4 + 6 * 4 < table.nbytes
    np.testing.assert_array_equal(unprune(numpy(pruned.rows), numpy(pruned.values), 10), table)
    empty = PrunedTable.from_table(np.zeros((4, 2), np.float32), name="empty")
    assert empty.kept == 0
    np.testing.assert_array_equal(numpy(empty.lookup(np.array([[0, 3]], np.int32))), np.zeros((1, 2, 2)))
    np.testing.assert_array_equal(unprune(numpy(empty.rows), numpy(empty.values), 4), np.zeros((4, 2)))


def test_field_embedding_matches_the_deep_layers_lookup() -> None:
    ids = np.array([[1, 2], [3, 0]], np.int32)
    dense = np.array([[0.5], [-1.0]], np.float32)
    embedding = FieldEmbedding([4, 3], num_dense=1, embedding_dim=2, seed=5)
    deep = DeepLayer([4, 3], num_dense=1, embedding_dim=2, hidden_units=[3], seed=5)
    out, ref = embedding(ids, dense), deep(ids, dense)
    np.testing.assert_array_equal(numpy(out["vectors"]), numpy(ref["vectors"]))  # same seeds, same rows
    assert numpy(out["flat"]).shape == (2, 5)
    np.testing.assert_array_equal(numpy(embedding.lookup(np.array([4 + 2]))), numpy(embedding.embeddings)[[6]])
    zeros = FieldEmbedding([4, 3], embedding_dim=2, initializer="zeros")
    zeros.build()
    assert not numpy(zeros.embeddings).any() and zeros.row_tables()[0][1] == "zeros"
    with pytest.raises(ValueError, match="initializer must be one of"):
        FieldEmbedding([4], initializer="uniform")


def test_mlp_outputs_and_bias() -> None:
    mlp = MLP([4, 3], output_units=1, output_bias_init=-2.0, seed=1)
    out = mlp(np.zeros((2, 5), np.float32))
    assert numpy(out["hidden"]).shape == (2, 3) and numpy(out["output"]).tolist() == pytest.approx([-2.0, -2.0])
    closed, opened = MLP([3], seed=1), MLP([3], hidden_bias_init=0.1, seed=1)
    zeros = np.zeros((1, 5), np.float32)
    assert not numpy(closed(zeros)["hidden"]).any() and (numpy(opened(zeros)["hidden"]) == 0.1).all()
    wide = MLP([], output_units=6, seed=1)
    out = wide(np.ones((2, 5), np.float32))
    assert numpy(out["output"]).shape == (2, 6) and numpy(out["hidden"]).shape == (2, 5)


@pytest.mark.parametrize(
    "layer",
    [
        CrossNetwork(3, seed=2, name="cross"),
        Similarity("dot", 0.3, 1.5, name="sim"),
        FieldEmbedding([4, 3], num_dense=2, embedding_dim=3, init_stddev=0.02, initializer="zeros", seed=1, name="e"),
        MLP([5, 2], output_units=3, dropout=0.1, output_bias_init=0.5, hidden_bias_init=0.1, seed=4, name="mlp"),
        PrunedTable(10, 3, 4, name="pruned"),
    ],
)
def test_layer_config_round_trip(layer) -> None:
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


def test_initialisers_are_deterministic_under_a_seed() -> None:
    def weights(seed: int) -> list[np.ndarray]:
        cross, mlp = CrossNetwork(2, seed=seed), MLP([4], seed=seed)
        cross.build((None, 3))
        mlp.build((None, 3))
        return [numpy(w) for w in cross.weights + mlp.weights]

    for a, b in zip(weights(1), weights(1), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(weights(1)[0], weights(2)[0])
