"""`replay --engine local` driver: file in, files out (samples, unmatched, dead letters), atomically."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jobs.bench.replay import synth_events
from jobs.config import JoinConfig, TaskConfig
from jobs.core import SampleJoin, event_from_json
from jobs.core.local import LocalJoinRunner
from jobs.runtime.replay import local as replay_mod
from jobs.runtime.replay.local import InputError, run_replay
from jobs.runtime.summary import ReplaySummary

T0 = 1_700_000_000_000


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def paths(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tmp_path / "out" / "samples.jsonl", tmp_path / "out" / "unmatched.jsonl", tmp_path / "out" / "bad.jsonl"


IMP = {"type": "impression", "request_id": "r1", "impression_id": "i1", "user_id": "u1", "item_id": "v9",
       "event_time_ms": T0, "position": 0, "context": {"page": "feed"}}
SNAP = {"type": "feature_snapshot", "request_id": "r1", "event_time_ms": T0, "sparse": {"city": "bj"},
        "dense": {"u_ctr_7d": 0.031}}
CLICK = {"type": "label", "request_id": "r1", "impression_id": "i1", "label_type": "click",
         "event_time_ms": T0 + 30_000, "value": 1.0}


def test_replay_writes_samples_unmatched_and_dead_letters(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "events.jsonl", [
        IMP, SNAP, CLICK, "", "not json", {**CLICK, "label_type": "like"}, {**CLICK, "event_time_ms": "x"},
        {**CLICK, "impression_id": "ghost"}, [1, 2], {**CLICK, "event_time_ms": T0 + 40_000}, "   ",
    ])
    out, unmatched, bad = paths(tmp_path)
    summary = run_replay(events, out, unmatched, bad, JoinConfig())
    samples = read_jsonl(out)
    assert [s["sample_id"] for s in samples] == ["i1:click:POSITIVE"]
    assert samples[0] == {
        "sample_id": "i1:click:POSITIVE", "task": "click", "request_id": "r1", "impression_id": "i1",
        "user_id": "u1", "item_id": "v9", "position": 0, "context": {"page": "feed"},
        "impression_time_ms": T0, "label": 1, "attribution": "POSITIVE", "label_time_ms": T0 + 30_000,
        "delay_ms": 30_000, "emit_time_ms": T0 + 30_000, "sparse": {"city": "bj"}, "dense": {"u_ctr_7d": 0.031},
        "has_snapshot": True,
    }
    assert sorted((u["impression_id"], u["reason"]) for u in read_jsonl(unmatched)) == [
        ("ghost", "no_impression"), ("i1", "duplicate")]
    dead = read_jsonl(bad)
    assert [d["line"] for d in dead] == [5, 7, 9]
    assert dead[0]["raw"] == "not json" and dead[0]["reason"].startswith("not valid JSON")
    assert "event_time_ms" in dead[1]["reason"] and json.loads(dead[1]["raw"])["event_time_ms"] == "x"
    assert "expected a JSON object" in dead[2]["reason"]
    assert summary.samples == {"click": {"POSITIVE": 1, "NEGATIVE": 0, "LATE_POSITIVE": 0}}
    assert summary.unmatched == {"no_impression": 1, "duplicate": 1}
    assert summary.ignored_label_types == {"like": 1}
    assert summary.deadlettered == 3
    assert summary.events_read == 6
    assert summary.lines_read == 9  # blank lines are not counted
    assert summary.seconds > 0
    assert not list(out.parent.glob(".*tmp*"))


def test_replay_equals_the_in_memory_runtime_on_a_synthetic_stream(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "events.jsonl", list(synth_events(6_000, seed=3)))
    out, unmatched, bad = paths(tmp_path)
    config = JoinConfig(tasks=(TaskConfig(name="click", window=600_000, horizon=1_800_000),))
    summary = run_replay(events, out, unmatched, bad, config)
    runner = LocalJoinRunner(SampleJoin(config))
    with open(events, "rb") as f:
        for line in f:
            runner.process(event_from_json(json.loads(line)))
    runner.finish()
    assert read_jsonl(out) == [s.to_json() for s in runner.samples]
    assert read_jsonl(unmatched) == [u.to_json() for u in runner.unmatched]
    assert bad.read_text() == ""
    counts = summary.samples["click"]
    assert min(counts.values()) > 0
    assert summary.total_samples == len(runner.samples)
    assert summary.events_read == len(events.read_text().splitlines())


def test_sample_lines_survive_hostile_strings(tmp_path: Path) -> None:
    hostile = '},{"sample_id":"x"}\n{"a":"\\u2028 ü"}'
    imp = {**IMP, "user_id": hostile, "context": {hostile: hostile, "sample_id": "},{"}}
    snap = {**SNAP, "sparse": {"k": hostile}}
    events = write_lines(tmp_path / "events.jsonl", [imp, snap, {**IMP, "impression_id": "i2"}])
    out, unmatched, bad = paths(tmp_path)
    run_replay(events, out, unmatched, bad, JoinConfig())
    samples = read_jsonl(out)
    assert len(samples) == 2
    assert samples[0]["user_id"] == hostile and samples[0]["context"][hostile] == hostile
    assert samples[0]["sparse"] == {"k": hostile}


def test_several_tasks_go_to_one_file_each_sample_with_its_task(tmp_path: Path) -> None:
    purchase = {**CLICK, "label_type": "purchase", "event_time_ms": T0 + 120_000}
    events = write_lines(tmp_path / "events.jsonl", [IMP, SNAP, CLICK, purchase])
    out, unmatched, bad = paths(tmp_path)
    config = JoinConfig(tasks=(TaskConfig(name="click"), TaskConfig(name="conversion", label_type="purchase")))
    summary = run_replay(events, out, unmatched, bad, config)
    assert sorted((s["task"], s["sample_id"]) for s in read_jsonl(out)) == [
        ("click", "i1:click:POSITIVE"), ("conversion", "i1:conversion:POSITIVE")]
    assert set(summary.samples) == {"click", "conversion"}


def test_unreadable_events_file_raises_and_writes_nothing(tmp_path: Path) -> None:
    out, unmatched, bad = paths(tmp_path)
    with pytest.raises(InputError, match="cannot read events file"):
        run_replay(tmp_path / "missing.jsonl", out, unmatched, bad, JoinConfig())
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_failing_run_leaves_no_output_and_keeps_old_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    events = write_lines(tmp_path / "events.jsonl", [IMP, SNAP, CLICK] * 50)
    out, unmatched, bad = paths(tmp_path)
    out.parent.mkdir()
    out.write_text("old\n")

    def boom(self: LocalJoinRunner) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(replay_mod.LocalJoinRunner, "finish", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_replay(events, out, unmatched, bad, JoinConfig())
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["samples.jsonl"]


def test_summary_json_round_trip_and_human_form() -> None:
    s = ReplaySummary(engine="local")
    s.add_sample("click", "POSITIVE", 3)
    s.add_sample("click", "NEGATIVE")
    s.add_unmatched("duplicate", 2)
    s.add_ignored(["like", "like", "share"])
    s.deadlettered, s.events_read, s.lines_read, s.seconds = 1, 10, 11, 0.5
    again = ReplaySummary.from_json(json.loads(json.dumps(s.to_json())))
    assert again.to_json() == s.to_json()
    assert s.events_per_second == 20.0
    text = s.format_human()
    assert "POSITIVE 3" in text and "duplicate 2" in text and "like 2" in text and "1 line(s) dead-lettered" in text


def test_replay_of_a_generated_stream_matches_its_ground_truth(tmp_path: Path) -> None:
    """jobs.generate writes delayed-feedback events and the truth per impression (clicked, delay)."""
    import subprocess
    import sys

    pytest.importorskip("jobs.generate")
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    subprocess.run([sys.executable, "-m", "jobs.generate", "--out", str(events), "--truth", str(truth),
                    "--impressions", "4000", "--seed", "11", "--quiet"], check=True, timeout=300)
    out, unmatched, bad = paths(tmp_path)
    summary = run_replay(events, out, unmatched, bad, JoinConfig())
    window, horizon = 600_000, 86_400_000
    expected: Counter[tuple[str, str, int]] = Counter()
    for row in read_jsonl(truth):
        iid, clicked, delay = row["impression_id"], row["clicked"], row["delay_ms"]
        if clicked and delay <= window:
            expected[(iid, "POSITIVE", 1)] += 1
        else:
            expected[(iid, "NEGATIVE", 0)] += 1
            if clicked and delay <= horizon:
                expected[(iid, "LATE_POSITIVE", 1)] += 1
    samples = read_jsonl(out)
    assert Counter((s["impression_id"], s["attribution"], s["label"]) for s in samples) == expected
    assert len({s["sample_id"] for s in samples}) == len(samples)
    assert summary.deadlettered == 0
    assert summary.ignored_label_types  # the generator also writes conversion and like labels
