"""``replay --engine flink`` agrees with ``replay --engine local`` (parallelism 1 and 2).

One random stream with bounded disorder (below the out-of-orderness), duplicate impressions and
labels, orphan labels, labels arriving before their impression, late and beyond-horizon labels,
snapshots too late to join, labels of a type no task uses, two tasks, and bad lines. Both engines
must write the same samples (field for field), the same unmatched labels with the same reasons and
the same dead letters (line numbers and reasons), and report the same counts.

The reasons of labels beyond the horizon depend on the watermark when they arrive (docs/join.md rule
4: ``beyond_horizon``, or ``no_impression`` once the impression's state was dropped); the flink
replay advances its watermark after every event as the local engine does, so they agree exactly.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.flink, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000
WINDOW_MS = 60_000
HORIZON_MS = 600_000
MAX_DISORDER_MS = 3_000  # below the default 5 s out-of-orderness
BAD_LINES = [
    "this is not json",
    '{"type": "click", "request_id": "x"}',
    '{"type": "impression", "request_id": "x", "user_id": "u", "item_id": "v", "event_time_ms": 1}',
    '{"type": "label", "request_id": "x", "impression_id": "i", "label_type": "click", "event_time_ms": "soon"}',
    "[1, 2, 3]",
]


def make_lines(seed: int = 11, requests: int = 500) -> list[str]:
    rng = random.Random(seed)
    timed: list[tuple[int, int, dict[str, Any]]] = []

    def add(event: dict[str, Any]) -> None:
        timed.append((event["event_time_ms"] + rng.randint(0, MAX_DISORDER_MS), len(timed), event))

    for r in range(requests):
        rid = f"req-{r}"
        t_i = T0 + r * 2_000 + rng.randint(0, 1_500)
        s = rng.random()
        if s < 0.75:
            add(
                {
                    "type": "feature_snapshot",
                    "request_id": rid,
                    "event_time_ms": t_i + rng.randint(-500, 3_000),
                    "sparse": {"city": rng.choice(["bj", "sh", "gz"])},
                    "dense": {"u_ctr": round(rng.random(), 4)},
                }
            )
        elif s < 0.85:  # too late to be joined (S = 30 s)
            add(
                {
                    "type": "feature_snapshot",
                    "request_id": rid,
                    "event_time_ms": t_i + 45_000,
                    "sparse": {"city": "late"},
                    "dense": {},
                }
            )
        for k in range(rng.randint(1, 3)):
            iid = f"{rid}-{k}"
            imp: dict[str, Any] = {
                "type": "impression",
                "request_id": rid,
                "impression_id": iid,
                "user_id": f"u{r % 23}",
                "item_id": f"v{rng.randint(0, 99)}",
                "event_time_ms": t_i,
                "position": k,
                "context": {"page": rng.choice(["feed", "search"])},
            }
            add(imp)
            if rng.random() < 0.05:
                add({**imp, "item_id": "dup"})
            for label_type, p in (("click", 0.45), ("conversion", 0.15), ("like", 0.1)):
                if rng.random() >= p:
                    continue
                u = rng.random()
                if u < 0.15:
                    delay = rng.randint(0, 1_000)  # often arrives before its impression
                elif u < 0.6:
                    delay = rng.randint(0, WINDOW_MS)
                elif u < 0.9:
                    delay = rng.randint(WINDOW_MS + 1, HORIZON_MS)
                else:
                    delay = rng.randint(HORIZON_MS + 1, HORIZON_MS + 120_000)
                label: dict[str, Any] = {
                    "type": "label",
                    "request_id": rid,
                    "impression_id": iid,
                    "label_type": label_type,
                    "event_time_ms": t_i + delay,
                    "value": 1.0,
                }
                add(label)
                if rng.random() < 0.08:
                    add({**label, "event_time_ms": label["event_time_ms"] + rng.randint(1, 30_000)})
        if rng.random() < 0.04:
            add(
                {
                    "type": "label",
                    "request_id": rid,
                    "impression_id": f"{rid}-ghost",
                    "label_type": "click",
                    "event_time_ms": t_i + 1_000,
                    "value": 1.0,
                }
            )
    timed.sort(key=lambda x: (x[0], x[1]))
    lines = [json.dumps(e) for _, _, e in timed]
    for n, bad in enumerate(BAD_LINES):  # spread bad lines (and a blank one) through the file
        lines.insert(100 + 137 * n, bad)
    lines.insert(50, "")
    return lines


def replay(events: Path, out_dir: Path, *extra: str) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    out_dir.mkdir()
    paths = {
        "samples": out_dir / "samples.jsonl",
        "unmatched": out_dir / "unmatched.jsonl",
        "deadletter": out_dir / "deadletter.jsonl",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.sample_join",
            "replay",
            "--events",
            str(events),
            "--out",
            str(paths["samples"]),
            "--unmatched",
            str(paths["unmatched"]),
            "--deadletter",
            str(paths["deadletter"]),
            "--task",
            "click",
            "--task",
            "conversion",
            "--window",
            "1m",
            "--horizon",
            "10m",
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    records = {k: [json.loads(line) for line in p.read_text().splitlines() if line.strip()] for k, p in paths.items()}
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")], "scratch files left behind"
    return summary, records


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "events.jsonl"
    path.write_text("\n".join(make_lines()) + "\n")
    return path


@pytest.fixture(scope="module")
def local_result(stream: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return replay(stream, tmp_path_factory.mktemp("local") / "out", "--engine", "local")


@pytest.mark.parametrize("parallelism", [1, 2])
def test_flink_replay_agrees_with_local(parallelism: int, stream: Path, local_result: Any, tmp_path: Path) -> None:
    local_summary, local = local_result
    summary, flink = replay(stream, tmp_path / "out", "--engine", "flink", "--parallelism", str(parallelism))

    # the stream exercises every case
    attributions = Counter((s["task"], s["attribution"]) for s in local["samples"])
    assert min(attributions.values()) > 0 and len(attributions) == 6, attributions

    # samples: identical, field for field
    def canonical(samples: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(s, sort_keys=True) for s in samples)

    assert canonical(flink["samples"]) == canonical(local["samples"])
    assert len({s["sample_id"] for s in flink["samples"]}) == len(flink["samples"])

    # unmatched labels: the same labels, the same reasons
    assert canonical(flink["unmatched"]) == canonical(local["unmatched"])
    reasons = Counter(u["reason"] for u in local["unmatched"])
    assert reasons["beyond_horizon"] and reasons["no_impression"] and reasons["duplicate"], reasons

    # dead letters: same lines, same line numbers, same reasons
    assert len(flink["deadletter"]) == len(BAD_LINES)
    assert sorted((d["line"], d["raw"]) for d in flink["deadletter"]) == sorted(
        (d["line"], d["raw"]) for d in local["deadletter"]
    )
    assert {d["line"]: d["reason"] for d in flink["deadletter"]} == {
        d["line"]: d["reason"] for d in local["deadletter"]
    }

    # the summary counts what was written
    assert summary["engine"] == "flink"
    for key in (
        "samples",
        "total_samples",
        "unmatched",
        "total_unmatched",
        "ignored_label_types",
        "deadlettered",
        "events_read",
        "lines_read",
    ):
        assert summary[key] == local_summary[key], key
    assert summary["extra"]["parallelism"] == parallelism


def test_flink_replay_of_an_empty_file(tmp_path: Path) -> None:
    events = tmp_path / "empty.jsonl"
    events.write_text("")
    summary, records = replay(events, tmp_path / "out", "--engine", "flink")
    assert records == {"samples": [], "unmatched": [], "deadletter": []}
    assert summary["events_read"] == 0 and summary["total_samples"] == 0
