"""The delayed-feedback grid's plumbing: generated worlds follow the join's rules and the delay
families, the split cuts what a live trainer has seen, the report and its summary (the full run is
`python -m trainer.bench.grid`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainer.bench import grid
from trainer.bench.families import FAMILIES, HORIZON_MS, HOUR, WINDOW_MS, arrived_share, late_delays
from trainer.bench.world import World, split
from trainer.samples import parse_sample


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_draws_late_delays(family: str) -> None:
    delays = late_delays(family, np.random.default_rng(0), 20_000)
    assert delays.min() > WINDOW_MS
    shares = arrived_share(family, np.array([1.0, 6.0, 12.0, 24.0]) * HOUR)
    assert np.all(np.diff(shares) >= 0) and shares[-1] == 1.0


def test_a_world_follows_the_join_rules_and_its_settings() -> None:
    world = World("uniform", ctr=0.3, late_share=0.5, seed=3)
    samples = world.generate(6000, 1_700_000_000_000, 12.0, part=0, tag="t.")
    rows = samples.rows
    assert [r["emit_time_ms"] for r in rows] == sorted(r["emit_time_ms"] for r in rows)
    for row in rows[:200] + rows[-200:]:
        parse_sample(row)  # a valid Sample record
    by_kind: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_kind.setdefault(str(row["attribution"]), []).append(row)
    assert all(r["delay_ms"] <= WINDOW_MS for r in by_kind["POSITIVE"])  # type: ignore[operator]
    assert all(r["emit_time_ms"] == r["impression_time_ms"] + WINDOW_MS for r in by_kind["NEGATIVE"])  # type: ignore[operator]
    late = [r["delay_ms"] for r in by_kind["LATE_POSITIVE"]]
    assert min(late) > WINDOW_MS and max(late) <= HORIZON_MS  # type: ignore[type-var, operator]
    clicked = sum(samples.truth.values())
    assert abs(clicked / len(samples.truth) - 0.3) < 0.03
    assert abs(len(late) / clicked - 0.5) < 0.05
    assert world.generate(6000, 1_700_000_000_000, 12.0, 0, "t.").rows == rows  # deterministic


def test_the_split_cuts_what_a_live_trainer_has_seen() -> None:
    cut = split(World("log-uniform", ctr=0.3, late_share=0.5, seed=4), 4000, 12.0, 4.0, history_hours=6.0)
    last = max(s["impression_time_ms"] for s in cut.oracle)
    assert all(s["emit_time_ms"] <= last for s in cut.online)
    assert all(s["impression_time_ms"] > last for s in cut.test)
    assert all(s["emit_time_ms"] > s["impression_time_ms"] for s in cut.online)
    assert max(s["impression_time_ms"] for s in cut.history) < min(s["impression_time_ms"] for s in cut.oracle)
    assert len({s["impression_id"] for s in cut.test}) == len(cut.test)
    assert {s["attribution"] for s in cut.test + cut.oracle} == {"POSITIVE", "NEGATIVE"}
    for row in cut.test[:100] + cut.oracle[:100]:
        parse_sample(row)
    # the streamed day: the previous day's samples and the stream's, as a trainer running since saw them
    assert cut.streamed and all(s["emit_time_ms"] <= last for s in cut.streamed)
    assert [s["emit_time_ms"] for s in cut.streamed] == sorted(s["emit_time_ms"] for s in cut.streamed)
    assert {s["sample_id"] for s in cut.online} <= {s["sample_id"] for s in cut.streamed}
    assert len(cut.streamed) < len(cut.history) + len(cut.online)  # late clicks after the cut are not there
    assert cut.streamed_oracle[-len(cut.oracle):] == cut.oracle
    assert len(cut.streamed_oracle) == len({s["impression_id"] for s in cut.history}) + len(cut.oracle)


def _metrics(logloss: float, bias: float, auc: float = 0.7) -> dict[str, float]:
    return {"logloss": logloss, "prediction_bias": bias, "auc": auc}


def _record(family: str, pu_bias: float) -> dict[str, object]:
    setting = {"naive": _metrics(0.60, 0.75), "oracle": _metrics(0.58, 1.0), "pu": _metrics(0.584, pu_bias)}
    return {
        "world": {"family": family, "ctr": 0.3, "late_share": 0.5, "seed": 1},
        "results": {
            "history": setting,
            "cold": {**setting, "pu log-flat": _metrics(0.59, 0.85)},
            "sidecar history": {"pu": _metrics(0.5843, 1.0)},
        },
    }


def test_the_report_checks_each_cell_against_the_targets(tmp_path: Path) -> None:
    records = [_record("uniform", 0.99), _record("spike", 1.09)]
    assert grid.r_nll(records[0]["results"]["history"], "pu") == pytest.approx(0.8)  # type: ignore[index]
    assert [grid.passes(r["results"], "history") for r in records] == [True, False]  # type: ignore[arg-type]
    assert [grid.passes(r["results"], "cold") for r in records] == [True, True]  # type: ignore[arg-type]
    summary = grid.summary(records)  # type: ignore[arg-type]
    assert summary["history"]["met"] == 1 and summary["history"]["of"] == 2
    assert summary["sidecar"]["max_abs_dlogloss"] == pytest.approx(0.0003)
    args = grid.parse_args(["--quick"])
    text = grid.markdown(records, args, 60.0)  # type: ignore[arg-type]
    assert "| uniform | 30% | 50% | 0.80 | 0.990 (0.75, 1.00)" in text
    assert "history (R-NLL >= 0.7, bias 0.93-1.07, AUC >= naive - 0.002): 1/2" in text
    out = tmp_path / "BENCHMARK.md"
    out.write_text("# Trainer\n\nthe rest\n")
    grid.write_section(out, "first")
    grid.write_section(out, "second")  # replaced, not appended twice
    assert out.read_text().count(grid.GRID_BEGIN) == 1 and "second" in out.read_text()
    assert grid.grid_block(out.read_text()) == f"{grid.GRID_BEGIN}\nsecond\n{grid.GRID_END}"


def test_naive_and_pu_always_run() -> None:
    assert grid.parse_args(["--models", "defer"]).models == ["naive", "pu", "defer"]
    assert grid.parse_args(["--models", "pu", "esdfm", "naive"]).models == ["naive", "pu", "esdfm"]


def test_keep_workdir_is_off_unless_asked() -> None:
    assert not grid.parse_args([]).keep_workdir and grid.parse_args(["--keep-workdir"]).keep_workdir


def test_the_reduced_grid_is_the_default_and_full_is_every_cell() -> None:
    reduced = grid.cells(grid.parse_args([]))
    assert len(reduced) == len(FAMILIES) + len(grid.REDUCED_EXTRA) and grid.parse_args([]).seeds == [1]
    full = grid.parse_args(["--full"])
    assert len(grid.cells(full)) == len(FAMILIES) * 2 * 3 and full.seeds == [1, 2, 3]


@pytest.mark.slow
def test_a_quick_grid_runs_end_to_end_and_leaves_no_cell_files(tmp_path: Path) -> None:
    out, workdir = tmp_path / "grid.json", tmp_path / "work"
    assert grid.main(["--quick", "--workdir", str(workdir), "--json", str(out)]) == 0
    assert workdir.is_dir() and not any(workdir.iterdir())  # each cell's ~200 MB removed once scored
    data = json.loads(out.read_text())
    (record,) = data["records"]
    assert set(record["results"]) == {"cold", "history"}
    assert set(record["results"]["history"]) == {"naive", "pu", "oracle"}
    assert data["summary"]["history"]["of"] == 1
