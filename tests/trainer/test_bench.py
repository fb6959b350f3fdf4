"""The delayed-feedback benchmark's plumbing (the full run is `python -m trainer.bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synth import make_samples, write_jsonl

from trainer import bench

ROOT = Path(__file__).resolve().parents[2]
JOBS_PYTHON = ROOT / ".venv" / "jobs" / "bin" / "python"


def test_split_attaches_true_labels_and_keeps_the_stream(tmp_path: Path) -> None:
    samples, truth = make_samples(400, late_fraction=0.6, beyond_fraction=0.2, ctr_logit=0.0, seed=1)
    samples_path = write_jsonl(tmp_path / "samples.jsonl", samples)
    times = {s["impression_id"]: s["impression_time_ms"] for s in samples}
    truth_path = write_jsonl(
        tmp_path / "truth.jsonl",
        [{"impression_id": i, "clicked": bool(c), "impression_time_ms": times[i]} for i, c in truth.items()],
    )
    split = bench.split_samples(samples_path, truth_path, 0.25, tmp_path)
    read = {
        name: [json.loads(line) for line in path.read_text().splitlines()]
        for name, path in (("train", split.train), ("oracle", split.oracle), ("test", split.test))
    }
    cutoff = min(s["impression_time_ms"] for s in read["test"])
    assert all(s["impression_time_ms"] < cutoff for s in read["train"])
    assert {s["impression_id"] for s in read["oracle"]} == {s["impression_id"] for s in read["train"]}
    assert len(read["oracle"]) == len({s["impression_id"] for s in read["oracle"]})  # one sample each
    for row in read["oracle"] + read["test"]:
        assert row["label"] == truth[row["impression_id"]]
        assert row["attribution"] == ("POSITIVE" if row["label"] else "NEGATIVE")
    assert any(s["attribution"] == "LATE_POSITIVE" for s in read["train"])
    assert split.stats["train_impressions"] == len(read["oracle"]) and split.stats["train_late_positives"] > 0
    (tmp_path / "emit").mkdir()
    by_emit = bench.split_samples(samples_path, truth_path, 0.25, tmp_path / "emit", by="emit")
    emitted = [json.loads(line) for line in by_emit.train.read_text().splitlines()]
    assert all(s["emit_time_ms"] < cutoff for s in emitted)


def test_drop_negatives_keeps_every_positive() -> None:
    samples, _ = make_samples(300, seed=2)
    kept = bench.drop_negatives(samples, 0.9, seed=0)
    assert [s for s in kept if s["label"]] == [s for s in samples if s["label"]]
    negatives = sum(1 for s in samples if s["attribution"] == "NEGATIVE")
    assert 0 < sum(1 for s in kept if s["attribution"] == "NEGATIVE") < 0.2 * negatives


def test_relative_gap_closed_and_the_issue_check() -> None:
    results = {
        "naive": {"auc": 0.70, "logloss": 0.40, "prediction_bias": 0.80},
        "oracle": {"auc": 0.72, "logloss": 0.36, "prediction_bias": 1.00},
        "pu": {"auc": 0.71, "logloss": 0.37, "prediction_bias": 0.95},
    }
    r_auc, r_nll = bench.relative(results, "pu")
    assert r_auc == pytest.approx(0.5) and r_nll == pytest.approx(0.75)
    assert bench.pu_check(results) == {
        "closes_30pct_nll_gap": True,
        "halves_calibration_error": True,
        "no_auc_loss": True,
    }
    results["pu"]["prediction_bias"] = 0.85
    assert not bench.pu_check(results)["halves_calibration_error"]


@pytest.mark.slow
@pytest.mark.skipif(not JOBS_PYTHON.exists(), reason="needs the jobs venv (make setup)")
def test_benchmark_end_to_end_small(tmp_path: Path, capsys) -> None:
    out = tmp_path / "BENCH.md"
    code = bench.main(
        [
            "--seeds",
            "1",
            "--impressions",
            "3000",
            "--late-fraction",
            "0.5",
            "--ctr",
            "0.1",
            "--losses",
            "naive",
            "pu",
            "--epochs",
            "1",
            "--stability-passes",
            "1",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = out.read_text()
    assert "| naive |" in report and "| pu |" in report and "oracle" in report
    assert "R-NLL" in report and "Long-stream stability" in report
