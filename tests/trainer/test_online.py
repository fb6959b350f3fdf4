"""The default correction in the online setting: one pass in emission order over what a live trainer
has seen (clicks still to come), evaluated on the following impressions with their true labels."""

from __future__ import annotations

import pytest
from synth import make_samples, online_split, write_jsonl

from trainer.config import TrainerConfig
from trainer.evaluate import evaluate
from trainer.fit import fit

HOURS = 16  # 12 h of training impressions, then 4 h of test impressions


@pytest.fixture(scope="module")
def online_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    directory = tmp_path_factory.mktemp("online")
    impressions = 8000
    samples, truth = make_samples(
        impressions,
        users=60,
        items=30,
        ctr_logit=-0.8,
        late_fraction=0.5,
        seed=3,
        spacing_ms=HOURS * 3_600_000 // impressions,
    )
    stream, test = online_split(samples, truth, test_fraction=0.25)
    train_path, test_path = write_jsonl(directory / "stream.jsonl", stream), write_jsonl(directory / "test.jsonl", test)
    results = {}
    for loss in ("naive", "pu"):
        # The defaults otherwise: what `fit --order stream --epochs 1 --loss LOSS` does.
        config = TrainerConfig.load(None, {"fit.order": "stream", "fit.epochs": 1, "loss.name": loss})
        fit([train_path], config, export=directory / loss)
        results[loss] = evaluate(directory / loss, [test_path])
    return results


@pytest.mark.slow
def test_default_correction_beats_naive_online(online_results: dict[str, dict[str, float]]) -> None:
    naive, pu = online_results["naive"], online_results["pu"]
    assert TrainerConfig().loss.name == "pu"
    assert naive["prediction_bias"] < 0.9  # the clicks still to come make naive low
    assert pu["logloss"] < naive["logloss"] - 0.002
    assert 0.9 <= pu["prediction_bias"] <= 1.1
    assert abs(pu["prediction_bias"] - 1.0) < 0.5 * abs(naive["prediction_bias"] - 1.0)
    assert pu["auc"] >= naive["auc"] - 0.005
