"""`trainer run` trains the dual DNN and the two tower from Kafka and publishes gated versions, as it
does Wide & Deep (issue #25): the same sidecar, losses, gate and registry; real broker, Redis, TF."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
from sidecar_helpers import SidecarEnv, produce
from stream import stream

from trainer.export import ExportedModel
from trainer.models.two_tower import SCORE_ITEMS
from trainer.samples import SampleTable, parse_sample

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", ["dual_dnn", "two_tower"])
def test_trainer_run_publishes_gated_versions_of_each_model(name: str, sidecar_env, exported: Path) -> None:
    overrides: dict[str, Any] = {"model.name": name, "model.dual_dnn": {"student_hidden_units": [8], "cross_layers": 1}}
    if name == "two_tower":  # distilled from the W&D export, the cascade's fine model
        overrides["model.two_tower"] = {
            "user_units": [16], "item_units": [16], "output_dim": 8, "distill_from": str(exported),
            "distill_ramp_steps": 5,
        }
    env: SidecarEnv = sidecar_env(**overrides)
    samples = stream(1500, seed=1, users=20, items=10)
    produce(env.bootstrap, env.topic, samples)
    result = env.run("--exit-when-idle", "3s")
    assert result.returncode == 0, result.stderr[-3000:]
    versions = env.versions()
    published = [v["version"] for v in versions if v["status"] == "published"]
    assert published and env.current() in published, versions
    directory = env.model_dir / str(env.current())
    meta = json.loads((directory / "assets.extra" / "trainer.json").read_text())
    assert meta["config"]["model"]["name"] == name
    table = SampleTable([parse_sample(s) for s in samples[-200:]])
    predictions = ExportedModel(directory).predict(table)
    assert predictions.shape == (200,) and 0.0 < float(predictions.mean()) < 1.0
    if name == "two_tower":
        assert SCORE_ITEMS in tf.saved_model.load(str(directory)).signatures
        assert meta["served"]["pruned_rows"] >= 0 and meta["config"]["model"]["two_tower"]["distill_from"]
    else:
        assert meta["served"] == {"served": "student"}
