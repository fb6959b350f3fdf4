"""`python -m jobs.sample_join` through a subprocess: arguments, errors, outputs (docs/cli.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000

IMP = {"type": "impression", "request_id": "r1", "impression_id": "i1", "user_id": "u1", "item_id": "v9",
       "event_time_ms": T0, "position": 0, "context": {"page": "feed"}}
SNAP = {"type": "feature_snapshot", "request_id": "r1", "event_time_ms": T0, "sparse": {"city": "bj"},
        "dense": {"u_ctr_7d": 0.031}}


def label(iid: str, delay_ms: int, label_type: str = "click") -> dict[str, Any]:
    return {"type": "label", "request_id": "r1", "impression_id": iid, "label_type": label_type,
            "event_time_ms": T0 + delay_ms, "value": 1.0}


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs.sample_join", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=300, check=False)


def write_events(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("args", [["--help"], ["replay", "--help"], ["run", "--help"]])
def test_help(args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 0
    assert "usage:" in result.stdout


def test_replay_end_to_end_with_default_side_outputs(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [IMP, SNAP, label("i1", 30_000), "{oops", label("x", 1)])
    out = tmp_path / "samples.jsonl"
    result = cli("replay", "--events", events, "--out", out)
    assert result.returncode == 0, result.stderr
    assert [s["attribution"] for s in read_jsonl(out)] == ["POSITIVE"]
    assert [u["reason"] for u in read_jsonl(tmp_path / "samples.unmatched.jsonl")] == ["no_impression"]
    dead = read_jsonl(tmp_path / "samples.deadletter.jsonl")
    assert [(d["line"], d["raw"]) for d in dead] == [(4, "{oops")]
    assert "samples[click]: 1 (POSITIVE 1, NEGATIVE 0, LATE_POSITIVE 0)" in result.stderr
    assert "no_impression 1" in result.stderr and "1 line(s) dead-lettered" in result.stderr
    assert "events/s" in result.stderr
    assert result.stdout == ""


def test_replay_flags_window_horizon_tasks_and_json_summary(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [
        IMP, SNAP, label("i1", 90_000), label("i1", 1_000, "like"), label("i1", 200_000, "purchase"),
        {**IMP, "impression_id": "i2"}, label("i2", 11 * 60_000),
    ])
    out, unmatched, bad = tmp_path / "s.jsonl", tmp_path / "u.jsonl", tmp_path / "b.jsonl"
    result = cli("replay", "--events", events, "--out", out, "--unmatched", unmatched, "--deadletter", bad,
                 "--task", "click", "--task", "purchase", "--window", "1m", "--horizon", "10m",
                 "--snapshot-wait", "5s", "--json-summary")  # the old spelling of --json still works
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("--json-summary is deprecated; use --json") == 1
    summary = json.loads(result.stdout)
    assert summary["samples"] == {
        "click": {"POSITIVE": 0, "NEGATIVE": 2, "LATE_POSITIVE": 1},
        "purchase": {"POSITIVE": 0, "NEGATIVE": 2, "LATE_POSITIVE": 1},
    }
    assert summary["unmatched"] == {"beyond_horizon": 1}
    assert summary["ignored_label_types"] == {"like": 1}
    assert summary["deadlettered"] == 0 and summary["events_read"] == 7
    tasks = {(s["task"], s["sample_id"]) for s in read_jsonl(out)}
    assert ("purchase", "i1:purchase:LATE_POSITIVE") in tasks and ("click", "i1:click:LATE_POSITIVE") in tasks
    assert all(s["emit_time_ms"] == T0 + 60_000 for s in read_jsonl(out) if s["attribution"] == "NEGATIVE")
    assert bad.read_text() == ""


def test_replay_takes_tasks_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "join.yaml"
    config.write_text("join:\n  out_of_orderness: 1s\n  tasks:\n    - name: ctr\n      label_type: click\n"
                      "      window: 2m\n      horizon: 1h\n      snapshot_wait: 10s\n")
    events = write_events(tmp_path / "events.jsonl", [IMP, SNAP, label("i1", 100_000)])
    out = tmp_path / "s.jsonl"
    result = cli("replay", "--events", events, "--out", out, "--config", config)
    assert result.returncode == 0, result.stderr
    assert [s["sample_id"] for s in read_jsonl(out)] == ["i1:ctr:POSITIVE"]
    result = cli("replay", "--events", events, "--out", out, "--config", config, "--window", "1m")
    assert [s["sample_id"] for s in read_jsonl(out)] == ["i1:ctr:NEGATIVE", "i1:ctr:LATE_POSITIVE"]


def test_short_window_shortens_the_default_snapshot_wait(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [IMP, SNAP])
    result = cli("replay", "--events", events, "--out", tmp_path / "s.jsonl", "--window", "10s")
    assert result.returncode == 0, result.stderr
    assert read_jsonl(tmp_path / "s.jsonl")[0]["emit_time_ms"] == T0 + 10_000


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["replay"], "required: --events, --out"),
        (["replay", "--events", "E"], "required: --out"),
        (["replay", "--events", "E", "--out", "O", "--window", "ten minutes"], "replay: error: --window: expected a"),
        (["replay", "--events", "E", "--out", "O", "--window", "10"], "replay: error: --window: expected a duration"),
        (["replay", "--events", "E", "--out", "O", "--engine", "spark"], "invalid choice: 'spark'"),
        (["replay", "--events", "E", "--out", "O", "--horizon", "1m"], "must be at least the window"),
        (["replay", "--events", "E", "--out", "O", "--task", "bad name"], "tasks.0.name"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: {replay,run}"),
        (["run", "--config", "/nonexistent/join.yaml"], "cannot read config file"),
        (["run", "--on-missing-checkpoint", "latest"], "run: error: --on-missing-checkpoint: invalid choice: 'latest'"),
        (["run", "--start-wait", "soon"], "run: error: --start-wait: "),
        (["run", "--metrics-port", "70000"], "run: error: --metrics-port: expected a port 0..65535"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert needle in line, line
    assert not list(tmp_path.iterdir())


def test_missing_or_unreadable_events_file(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    result = cli("replay", "--events", tmp_path / "nope.jsonl", "--out", out)
    assert result.returncode == 2
    assert "events file" in one_line(result.stderr) and "does not exist" in result.stderr
    result = cli("replay", "--events", tmp_path, "--out", out)
    assert result.returncode == 2
    assert "is not a regular file" in one_line(result.stderr)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_outputs_must_be_distinct_files(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [IMP])
    result = cli("replay", "--events", events, "--out", tmp_path / "x.jsonl", "--unmatched", tmp_path / "x.jsonl")
    assert result.returncode == 2
    assert "distinct" in one_line(result.stderr)
    result = cli("replay", "--events", events, "--out", events)
    assert result.returncode == 2


def test_existing_outputs_are_replaced_whole(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [IMP, SNAP])
    out = tmp_path / "s.jsonl"
    out.write_text("stale\n" * 100)
    result = cli("replay", "--events", events, "--out", out, "--quiet")
    assert result.returncode == 0 and result.stderr == ""
    assert [s["sample_id"] for s in read_jsonl(out)] == ["i1:click:NEGATIVE"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events.jsonl", "s.deadletter.jsonl", "s.jsonl", "s.unmatched.jsonl"]


def test_output_into_a_new_directory(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [IMP])
    result = cli("replay", "--events", events, "--out", tmp_path / "a" / "b" / "s.jsonl")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a" / "b" / "s.unmatched.jsonl").exists()


def test_flink_engine_without_pyflink_is_a_one_line_error(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [IMP])
    out = tmp_path / "s.jsonl"
    # An interpreter where PyFlink cannot be imported (as in the trainer's venv).
    blocked = (
        "import sys, runpy; sys.modules['pyflink'] = None; "
        f"sys.argv = ['jobs.sample_join', 'replay', '--events', {str(events)!r}, '--out', {str(out)!r}, "
        "'--engine', 'flink']; runpy.run_module('jobs.sample_join', run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, cwd=REPO,
                            timeout=120, check=False)
    assert result.returncode == 1
    assert "error: PyFlink is not installed" in one_line(result.stderr)
    assert not out.exists()


def test_run_rejects_an_invalid_config_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("join:\n  tasks: []\n")
    result = cli("run", "--config", config)
    assert result.returncode == 2
    assert "at least one task" in one_line(result.stderr)


def test_run_flags_override_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs import sample_join

    args = sample_join.build_parser().parse_args([
        "run", "--bootstrap-servers", "h:1", "--redis-url", "redis://h:2/0", "--group-id", "g",
        "--task", "click", "--task", "buy", "--window", "5m", "--horizon", "2h", "--labels-topic", "L",
        "--samples-prefix", "out.", "--unmatched-topic", "U", "--deadletter-topic", "D",
        "--impressions-topic", "I", "--feature-snapshots-topic", "F", "--exit-when-idle", "3s",
        "--on-missing-checkpoint", "committed", "--start-wait", "2m",
    ])
    config = sample_join.run_config_from_args(args)
    assert config.kafka.bootstrap_servers == "h:1" and config.kafka.group_id == "g"
    assert config.redis.url == "redis://h:2/0"
    assert [(t.name, t.window, t.horizon) for t in config.join.tasks] == [
        ("click", 300_000, 7_200_000), ("buy", 300_000, 7_200_000)]
    topics = config.kafka.topics
    assert (topics.impressions, topics.feature_snapshots, topics.labels, topics.unmatched, topics.deadletter) == (
        "I", "F", "L", "U", "D")
    assert topics.samples("click") == "out.click"
    assert config.local.exit_when_idle == 3_000
    assert (config.checkpoint.on_missing, config.local.start_wait) == ("committed", 120_000)
    defaults = sample_join.run_config_from_args(sample_join.build_parser().parse_args(["run"]))
    assert (defaults.checkpoint.on_missing, defaults.local.start_wait) == ("fail", 30_000)


def test_byte_order_mark_crlf_and_empty_files(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\xef\xbb\xbf" + json.dumps(IMP).encode() + b"\r\n" + json.dumps(SNAP).encode() + b"\r\n")
    result = cli("replay", "--events", events, "--out", tmp_path / "s.jsonl", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deadlettered"] == 0
    assert read_jsonl(tmp_path / "s.jsonl")[0]["has_snapshot"] is True
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = cli("replay", "--events", empty, "--out", tmp_path / "e.jsonl", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["events_read"] == 0
    assert (tmp_path / "e.jsonl").read_text() == ""


def test_output_paths_that_cannot_be_written_are_one_line_errors(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", [IMP])
    result = cli("replay", "--events", events, "--out", tmp_path)
    assert result.returncode == 2
    assert "is a directory" in one_line(result.stderr)
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("replay", "--events", events, "--out", blocker / "sub" / "s.jsonl")
    assert result.returncode == 1
    one_line(result.stderr)
