"""What every model shares (trainer/models/base.py): which optimizer trains what."""

from __future__ import annotations

import numpy as np
import pytest
from models_helpers import config, table, train

from trainer.fit import cold_stream_state
from trainer.samples import LATE_POSITIVE


@pytest.mark.parametrize("name", ["wide_deep", "dual_dnn", "two_tower"])
def test_a_cold_streams_auxiliary_heads_move_toward_their_rates_at_ftrls_pace(name: str) -> None:
    """A cold stream starts the dp head at logit -4 (a late-positive rate of 0.018, against 0.09 here). Its
    bias is FTRL's, as the main bias is: it moves 0.035 in these 20 steps; under Adam it moved 0.006."""
    data = table(1200)
    assert np.mean(data.attributions == LATE_POSITIVE) > 0.05  # well above the start's rate
    state = cold_stream_state(config(name, loss="defer"), data)
    state.set_order("stream")
    heads = [v for v in state.model.wide_variables if "_head/bias" in v.path]
    assert len(heads) == 2
    before = state.model.dp_head.bias.numpy().copy()
    train(state, data, 20)
    assert float(state.model.dp_head.bias.numpy()[0] - before[0]) > 0.02
