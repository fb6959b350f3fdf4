"""Shared pieces of the model tests (test_models_*.py): tiny configs, a small table, a few steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from synth import make_samples

from trainer.config import TrainerConfig
from trainer.fit import targets
from trainer.samples import SampleTable, parse_sample

# Tiny networks: the tests check wiring and exactness, not quality (the benchmark does that).
TINY: dict[str, Any] = {
    "embedding_dim": 4,
    "wide_factor_dim": 2,
    "hidden_units": [16, 8],
    "dual_dnn": {"student_hidden_units": [4], "cross_layers": 1},
    "two_tower": {"user_units": [8], "item_units": [8], "output_dim": 4},
}


def tiny_model(name: str, **two_tower: Any) -> dict[str, Any]:
    model = {**TINY, "name": name}
    model["two_tower"] = {**TINY["two_tower"], **two_tower}
    return model


def config(name: str, loss: str = "pu", two_tower: dict[str, Any] | None = None, **overrides: Any) -> TrainerConfig:
    data = {"model": tiny_model(name, **(two_tower or {})), "loss": {"name": loss}, "fit": {"batch_size": 128}}
    return TrainerConfig.from_json(_merge(data, overrides))


def _merge(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


def table(impressions: int = 600, seed: int = 3) -> SampleTable:
    rows, _ = make_samples(impressions, users=40, items=20, seed=seed)
    return SampleTable([parse_sample(r) for r in rows])


def train(state: Any, data: SampleTable, steps: int, teacher: np.ndarray | None = None) -> dict[str, float]:
    """``steps`` train steps over ``data`` in 128-sample batches (round robin); the last metrics."""
    prepared = state.prepare(data)
    metrics: dict[str, float] = {}
    for step in range(steps):
        start = (step * 128) % max(1, len(data) - 128)
        rows = np.arange(start, start + 128)
        metrics = state.train_on_batch(state.encode(prepared, rows), targets(data, rows, teacher))
    return metrics


def write_config(path: Path, name: str, **two_tower: Any) -> Path:
    path.write_text(yaml.safe_dump({"model": tiny_model(name, **two_tower)}))
    return path
