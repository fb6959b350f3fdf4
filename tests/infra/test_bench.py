"""`make bench`: the one table, each figure beside its same-run baseline, and bench-results.json."""

from __future__ import annotations

import importlib
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


def _collisions(ids: int, collided: int) -> dict[str, float]:
    return {"ids": ids, "collided_ids": collided, "rate": collided / ids}


def test_hashing_rows_put_multi_hash_beside_single_hashing_at_equal_memory() -> None:
    """trainer.bench.hashing's JSON, trimmed: at scale the seed-1 run of trainer/HASHING_BENCHMARK.md (20 M
    IDs, 0.2 rows per ID), streamed a run with --stream-ids 2000."""
    def scheme(tables: list[int], auc: float) -> dict[str, object]:
        return {"tables": tables, **_collisions(2000, 0), "auc": auc, "logloss": 0.239}

    data = {
        "setup": {"tables": 2, "budgets": [0.2, 1.0]},
        "at_scale": {"ids": 20_000_000, "budgets": [
            {"budget": 0.2, "rows": 4_000_000, "single": _collisions(20_000_000, 19_866_000),
             "multi_hash": _collisions(20_000_000, 104)},
            {"budget": 1.0, "rows": 20_000_000, "single": _collisions(20_000_000, 12_644_000),
             "multi_hash": _collisions(20_000_000, 0)},
        ]},
        "stream": {"ids": 2000, "budgets": [{"budget": 0.2, "rows": 400, "schemes": {
            "single": scheme([400], 0.5215), "multi_hash_sum": scheme([200, 200], 0.5247),
            "multi_hash_concat": scheme([200, 200], 0.5463), "vocabulary": scheme([400], 0.5260)}}]},
    }
    rows = bench.hashing_rows(data)
    assert [r.figure for r in rows] == [
        "hashing: IDs collided, multi-hash 2 tables, 0.2 rows per ID",
        "hashing: IDs collided, multi-hash 2 tables, 1 row per ID",
        "hashing: AUC, multi-hash sum, 0.2 rows per ID (2,000 IDs streamed)",
        "hashing: AUC, multi-hash concat, 0.2 rows per ID (2,000 IDs streamed)",
    ]
    collided = rows[0]
    assert collided.value == pytest.approx(0.00052) and collided.baseline_value == pytest.approx(99.33)
    assert collided.unit == "% of 20,000,000 IDs" and collided.target == "< single hashing"
    assert rows[1].ratio == 0.0
    assert rows[3].value == 0.5463 and rows[3].baseline_value == 0.5215 and rows[3].target == "reported"
    # a rate of 5e-6 is not printed as 0.000, nor its ratio to single hashing as 0.00
    line = bench.table([("hashing", rows)]).splitlines()[2]
    assert line == ("| hashing | hashing: IDs collided, multi-hash 2 tables, 0.2 rows per ID "
                    "| 0.00052 % of 20,000,000 IDs | single hashing, the same rows | 99.330 | 5.2e-06 "
                    "| < single hashing |")


def test_delta_rows_give_each_interval_beside_the_full_export() -> None:
    """trainer.bench.delta's JSON, trimmed (a run with --rate 100 --minutes 1), and an interval too long
    for a delta after the warm-up, as summarize() gives it."""
    data = {
        "model": {"name": "wide_deep", "vocab_capacity": 65536},
        "results": [
            {"interval_s": 10, "deltas": 6, "delta_bytes": {"median": 75018, "mean": 65877, "p90": 80351},
             "full_bytes": 28537559, "ratio": 0.00263},
            {"interval_s": 60, "deltas": 0},
        ],
    }
    ten_s, one_min = bench.delta_rows(data)
    assert ten_s.figure == "delta exports every 10 s: bytes per delta (median)" and ten_s.target == "reported"
    assert ten_s.ratio == pytest.approx(data["results"][0]["ratio"], abs=5e-6)  # the benchmark's own ratio
    assert ten_s.baseline == "full export, same step (65,536 slots per field)"
    assert one_min.figure == "delta exports every 1 min: bytes per delta (median)"
    assert one_min.value is None and one_min.ratio is None


@pytest.mark.parametrize("name", ["hashing", "delta-exports"])
def test_the_quick_arguments_are_the_benchmarks_own(name: str, tmp_path: Path) -> None:
    """Their parsers import without TensorFlow: a quick run's command line is checked here, the run itself
    by `python -m infra.bench --only NAME --quick`."""
    (entry,) = [b for b in bench.BENCHMARKS if b.name == name]
    module = importlib.import_module(entry.argv[entry.argv.index("-m") + 1])
    argv = [a.replace("{out}", str(tmp_path / "out.json")).replace("{dir}", str(tmp_path)) for a in entry.argv[2:]]
    args = module.build_parser().parse_args([*argv, *entry.quick])
    assert str(args.json) == str(tmp_path / "out.json")


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
