"""The delayed-feedback benchmark's plumbing (the full run is `python -m trainer.bench.delayed_feedback`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synth import make_samples, write_jsonl

from trainer.bench import data, delayed_feedback, report

ROOT = Path(__file__).resolve().parents[2]
JOBS_PYTHON = ROOT / ".venv" / "jobs" / "bin" / "python"


def test_split_attaches_true_labels_and_cuts_the_online_stream(tmp_path: Path) -> None:
    samples, truth = make_samples(400, late_fraction=0.6, beyond_fraction=0.2, ctr_logit=0.0, seed=1, spacing_ms=60_000)
    samples_path = write_jsonl(tmp_path / "samples.jsonl", samples)
    times = {s["impression_id"]: s["impression_time_ms"] for s in samples}
    truth_path = write_jsonl(
        tmp_path / "truth.jsonl",
        [{"impression_id": i, "clicked": bool(c), "impression_time_ms": times[i]} for i, c in truth.items()],
    )
    split = data.split_samples(samples_path, truth_path, 0.25, tmp_path)
    read = {
        name: [json.loads(line) for line in path.read_text().splitlines()]
        for name, path in (
            ("online", split.online),
            ("offline", split.offline),
            ("oracle", split.oracle),
            ("test", split.test),
        )
    }
    last = max(s["impression_time_ms"] for s in read["oracle"])
    assert all(s["impression_time_ms"] > last for s in read["test"])
    # online: what a live trainer has seen when the last training impression is served, in emission order
    assert all(s["emit_time_ms"] <= last for s in read["online"])
    assert [s["emit_time_ms"] for s in read["online"]] == sorted(s["emit_time_ms"] for s in read["online"])
    assert len(read["online"]) == sum(1 for s in samples if s["emit_time_ms"] <= last)
    # offline: every sample of the training impressions, late positives however late
    assert {s["impression_id"] for s in read["offline"]} == {s["impression_id"] for s in read["oracle"]}
    assert any(s["emit_time_ms"] > last for s in read["offline"])
    assert len(read["oracle"]) == len({s["impression_id"] for s in read["oracle"]})  # one sample each
    assert [s["impression_time_ms"] for s in read["oracle"]] == sorted(s["impression_time_ms"] for s in read["oracle"])
    for row in read["oracle"] + read["test"]:
        assert row["label"] == truth[row["impression_id"]]
        assert row["attribution"] == ("POSITIVE" if row["label"] else "NEGATIVE")
    assert 0 < split.stats["online_late_positives"] < split.stats["offline_late_positives"]


def test_drop_negatives_keeps_every_positive() -> None:
    samples, _ = make_samples(300, seed=2)
    kept = data.drop_negatives(samples, 0.9, seed=0)
    assert [s for s in kept if s["label"]] == [s for s in samples if s["label"]]
    negatives = sum(1 for s in samples if s["attribution"] == "NEGATIVE")
    assert 0 < sum(1 for s in kept if s["attribution"] == "NEGATIVE") < 0.2 * negatives


def test_relative_gap_closed_and_the_issue_check() -> None:
    results = {
        "naive": {"auc": 0.70, "logloss": 0.40, "prediction_bias": 0.80},
        "oracle": {"auc": 0.72, "logloss": 0.36, "prediction_bias": 1.00},
        "pu": {"auc": 0.71, "logloss": 0.37, "prediction_bias": 0.95},
    }
    r_auc, r_nll = report.relative(results, "pu")
    assert r_auc == pytest.approx(0.5) and r_nll == pytest.approx(0.75)
    assert report.online_check(results) == {
        "closes_half_the_nll_gap": True,
        "bias_within_0.9_1.1": True,
        "auc_within_0.002_of_naive": True,
    }
    results["pu"]["prediction_bias"] = 0.85
    assert not report.online_check(results)["bias_within_0.9_1.1"]


@pytest.mark.slow
@pytest.mark.skipif(not JOBS_PYTHON.exists(), reason="needs the jobs venv (make setup)")
def test_benchmark_end_to_end_small(tmp_path: Path, capsys) -> None:
    out = tmp_path / "BENCH.md"
    argv = ["--quick", "--impressions", "3000", "--workdir", str(tmp_path / "work"), "--out", str(out)]
    code = delayed_feedback.main(argv)
    assert code == 0
    text = out.read_text()
    assert "## Online (headline)" in text and "| naive |" in text and "| pu |" in text
    assert "oracle" in text and "R-NLL" in text
