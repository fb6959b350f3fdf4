"""PU's LATE_POSITIVE term is unbounded below; the bounded loss must not diverge on a long stream."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainer.config import LossConfig
from trainer.losses.registry import get_loss
from trainer.samples import LATE_POSITIVE, NEGATIVE, POSITIVE


def train_stream(config: LossConfig, steps: int = 3000) -> tuple[float, float]:
    """Logistic model over 4 items; item 0's late positives arrive but its NEGATIVEs were never seen
    (e.g. the trainer started after they were emitted). Returns (item 0's final logit, final loss)."""
    loss_fn = get_loss(config.name, config.params())
    weights = tf.Variable(tf.zeros(4))
    optimizer = tf.keras.optimizers.SGD(learning_rate=0.5)
    rng = np.random.default_rng(0)
    items = np.array([0, 0, 1, 1, 2, 2, 3, 3, 1, 2, 3, 1])
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0], np.float32)
    attribution = np.array([LATE_POSITIVE] * 2 + [NEGATIVE] * 5 + [POSITIVE] * 2 + [NEGATIVE] * 3, np.int32)

    orders = tf.constant(np.stack([rng.permutation(len(items)) for _ in range(steps)]), tf.int32)

    @tf.function
    def run() -> tf.Tensor:
        loss = tf.constant(0.0)
        for i in tf.range(steps):
            order = orders[i]
            with tf.GradientTape() as tape:
                logits = tf.gather(weights, tf.gather(items, order))
                targets = {"label": tf.gather(labels, order), "attribution": tf.gather(attribution, order)}
                loss = loss_fn(targets, {"logit": logits})["loss"]
            optimizer.apply_gradients([(tape.gradient(loss, weights), weights)])
        return loss

    loss = run()
    return float(weights[0]), float(loss)


def test_unbounded_pu_diverges_on_a_long_stream() -> None:
    logit, loss = train_stream(LossConfig(name="pu", pu_logit_bound=1e9, pu_nnpu=False))
    assert logit > 100.0  # grows linearly with the number of steps
    assert loss < -10.0  # and the loss with it, without end


def test_bounded_pu_stays_finite() -> None:
    logit, loss = train_stream(LossConfig(name="pu"))
    # past the bound the late positive pulls like a plain positive: logarithmic growth at most
    assert logit < 12.0
    assert loss > -1.0
    short_logit, _ = train_stream(LossConfig(name="pu"), steps=1500)
    assert logit - short_logit < 1.0  # it has levelled off


def test_nnpu_guard_alone_also_stops_the_divergence() -> None:
    logit, _ = train_stream(LossConfig(name="pu", pu_logit_bound=1e9, pu_nnpu=True))
    assert logit < 30.0
