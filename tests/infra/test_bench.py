"""`make bench`: the one table, each figure beside its same-run baseline, and bench-results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import bench


def test_rows_put_each_figure_beside_its_baseline() -> None:
    embedded = {
        "embedded": {"events_per_s": 30_000.0, "state_bytes_per_pending_impression": 150.0},
        "passthrough": {"events_per_s": 60_000.0},
        "freshness": {"p99_s": 0.4},
    }
    rows = bench.embedded_rows(embedded)
    assert rows[0].ratio == pytest.approx(0.5) and rows[0].target == ">= 0.6"
    assert [r.figure for r in rows[1:]] == ["state per pending impression", "freshness: label -> sample, p99"]
    replay = {"results": [{"name": "local", "events_per_second": 50_000.0}, {"name": "flink", "events_per_second": 5e3},
                          {"name": "flink-sql", "events_per_second": 20_000.0}]}
    assert [round(r.ratio or 0, 2) for r in bench.replay_rows(replay)] == [2.5, 0.25]


def test_delayed_feedback_rows_compute_the_gap_closed_per_seed() -> None:
    def report(logloss: float, bias: float = 1.0, auc: float = 0.7) -> dict[str, float]:
        return {"logloss": logloss, "prediction_bias": bias, "auc": auc}

    seeds = [
        {"online": {"naive": report(0.60, 0.8), "pu": report(0.55, 1.0), "oracle": report(0.50)}},
        {"online": {"naive": report(0.70, 0.7), "pu": report(0.62, 0.9), "oracle": report(0.60)}},
    ]
    rows = {r.figure: r for r in bench.delayed_feedback_rows(seeds)}
    assert rows["PU online: R-NLL (share of naive->oracle gap)"].value == pytest.approx((0.5 + 0.8) / 2)
    assert rows["PU online: prediction bias"].value == pytest.approx(0.95)
    assert rows["PU online: prediction bias"].baseline_value == pytest.approx(0.75)


def test_quick_codec_run_prints_the_table_and_writes_the_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench-results.json"
    assert bench.main(["--only", "codec", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| codec | codec: Sample Avro encode |" in printed and "orjson encode" in printed
    data = json.loads(out.read_text())
    (record,) = data["benchmarks"]
    assert record["name"] == "codec" and record["rows"][0]["value"] > 0 and record["rows"][0]["ratio"] > 0


def test_every_registered_benchmark_names_a_runnable_module_in_a_bench_subpackage() -> None:
    root = Path(bench.ROOT)
    for entry in bench.BENCHMARKS:
        module = entry.argv[entry.argv.index("-m") + 1]
        assert ".bench." in module, f"{entry.name}: {module} is not in a bench subpackage"
        assert root.joinpath(*module.split(".")).with_suffix(".py").is_file(), f"{entry.name}: no module {module}"
