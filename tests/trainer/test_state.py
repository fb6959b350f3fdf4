"""The train step's progressive scores: the batch's logits before the update, from the step itself."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.config import TrainerConfig
from trainer.fit import targets
from trainer.samples import SampleTable, parse_sample
from trainer.state import TrainerState


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_train_and_score_returns_the_logits_from_before_the_update(dropout: float) -> None:
    from synth import make_samples

    rows, _ = make_samples(512, users=40, items=20, seed=3)
    table = SampleTable([parse_sample(r) for r in rows])
    state = TrainerState.create(TrainerConfig.load(None, {"model.dropout": dropout, "fit.batch_size": 256}), table)
    prepared = state.prepare(table)
    for start in (0, 256):  # the second batch scores a model that has trained once
        batch = np.arange(start, start + 256)
        encoded = state.encode(prepared, batch)
        before = state.logits(encoded)
        metrics, scored = state.train_and_score(encoded, targets(table, batch, None))
        after = state.logits(encoded)
        assert np.isfinite(metrics["total_loss"]) and "logit" not in metrics
        np.testing.assert_allclose(scored, before, rtol=1e-5, atol=1e-5)  # inference mode: no dropout
        assert np.abs(after - before).max() > 1e-4  # the step did train on the batch
