"""`make bench`: the one table, each figure beside its same-run baseline, and bench-results.json."""

from __future__ import annotations

import json
import re
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
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["date"]) and data["quick"] is True


def test_every_registered_benchmark_names_a_runnable_module_in_a_bench_subpackage() -> None:
    root = Path(bench.ROOT)
    for entry in bench.BENCHMARKS:
        module = entry.argv[entry.argv.index("-m") + 1]
        assert ".bench." in module, f"{entry.name}: {module} is not in a bench subpackage"
        assert root.joinpath(*module.split(".")).with_suffix(".py").is_file(), f"{entry.name}: no module {module}"


README_TABLE = re.compile(
    r"<!-- bench-table: (?P<command>python -m infra\.bench --readme-table --results (?P<file>\S+)) [^\n]*-->\n"
    r"(?P<body>.*?)\n<!-- /bench-table -->",
    flags=re.S,
)


def test_the_readme_table_is_what_the_command_prints_from_the_file_it_cites(capsys) -> None:
    """No figure in the README's table differs from the results file it names (issue #28)."""
    root = Path(bench.ROOT)
    found = README_TABLE.findall((root / "README.md").read_text(encoding="utf-8"))
    assert len(found) == 1, "README.md needs one <!-- bench-table: ... --> ... <!-- /bench-table --> block"
    ((command, cited, body),) = found
    results = root / cited
    assert results.is_file() and root in results.resolve().parents, f"README.md cites {cited}, not a file of the repo"
    expected = bench.readme_table(json.loads(results.read_text()))
    assert body.strip() == expected, f"README.md's table is stale: replace it with what `{command}` prints"
    assert bench.main(["--readme-table", "--results", str(results)]) == 0
    assert capsys.readouterr().out == expected + "\n"


def test_the_readme_table_says_when_where_and_what_the_run_lacks() -> None:
    rows = [bench.Row("replay --engine local", 60_000.0, "events/s", "peer", 20_000.0, ">= 0.5 x peer").to_json()]
    data = {"machine": "2 cores (X), Python 3.11.7, load 0.3 at start", "date": "2026-12-07", "quick": False,
            "benchmarks": [{"name": "replay", "rows": rows}, {"name": "codec", "error": "exit 1: boom", "rows": []}]}
    caption, table = bench.readme_table(data).split("\n\n")
    others = [b.name for b in bench.BENCHMARKS if b.name not in ("replay", "codec")]
    assert caption == (f"`make bench` of 2026-12-07 on 2 cores (X), Python 3.11.7, load 0.3 at start. "
                       f"Failed in this run: codec (exit 1: boom). Not in this run: {', '.join(others)}.")
    row = "| replay | replay --engine local | 60,000 events/s | peer | 20,000 | 3.00 | >= 0.5 x peer |"
    assert table.splitlines()[2] == row


def test_the_readme_table_refuses_a_quick_run_and_an_unreadable_file(tmp_path: Path, capsys) -> None:
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps({"machine": "m", "quick": True, "benchmarks": []}))
    for path, reason in ((quick, "it holds a --quick run, which is not for quoting"),
                         (tmp_path / "missing.json", "No such file or directory")):
        assert bench.main(["--readme-table", "--results", str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.splitlines()) == 1
        assert captured.err.startswith(f"python -m infra.bench: error: --results: cannot use {path}: ")
        assert reason in captured.err
