"""The seed models' benchmark end to end on a small generated stream (the real run: make bench)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.bench import models

ROOT = Path(__file__).resolve().parents[2]
JOBS_PYTHON = ROOT / ".venv" / "jobs" / "bin" / "python"


@pytest.mark.skipif(not JOBS_PYTHON.exists(), reason="needs the jobs venv (make setup) to generate and join events")
def test_the_benchmark_reports_every_figure(tmp_path: Path, capsys) -> None:
    out = tmp_path / "models.json"
    argv = ["--impressions", "3000", "--users", "300", "--items", "100", "--epochs", "1", "--calls", "4",
            "--rounds", "1", "--n-items", "12", "--workdir", str(tmp_path / "work"), "--json", str(out)]
    assert models.main(argv) == 0
    result = json.loads(out.read_text())
    dual, tower = result["dual_dnn"], result["two_tower"]
    assert dual["parameters"]["student_total"] < dual["parameters"]["teacher_total"]
    for size in ("batch_1", "batch_512"):
        assert set(dual["latency_ms"][size]) == {"teacher", "student", "wide_deep", "student_export",
                                                 "wide_deep_export"}
        assert all(ms > 0 for ms in dual["latency_ms"][size].values())
    assert 0.0 < dual["teacher"]["auc"] < 1.0 and 0.0 < dual["student"]["auc"] < 1.0
    assert tower["pruned_vs_full_max_abs_diff"] == 0.0  # the pruned export scores exactly as the full one
    assert tower["score_items_vs_single_calls_max_abs_diff"] < 1e-6
    assert 0 < tower["rows_pruned"] < tower["rows"] and tower["n_items"] == 12
    assert tower["export_variables_bytes"]["pruned"] < tower["export_variables_bytes"]["full"]
    assert set(tower["latency_ms"]) == {"score_items", "single_calls", "one_batched_call"}
    report = capsys.readouterr().out
    assert "### Dual DNN" in report and "score_items" in report
