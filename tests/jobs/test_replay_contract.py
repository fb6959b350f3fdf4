"""Differential test of `replay` against an independent batch oracle of docs/join.md.

The oracle below knows nothing of watermarks, timers or state: it applies the contract's rules to
the whole stream at once. For streams whose disorder stays within the allowed out-of-orderness,
a correct streaming join must give exactly the same samples, field for field, on every engine.
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

WINDOW_MS = 60_000
HORIZON_MS = 600_000
SNAPSHOT_WAIT_MS = 30_000  # the default S
MAX_DISORDER_MS = 3_000  # below the default 5 s out-of-orderness
T0 = 1_700_000_000_000


def make_stream(seed: int, requests: int = 300) -> list[dict[str, Any]]:
    """Random events in arrival order: late, beyond-horizon, duplicate, orphan and foreign labels."""
    rng = random.Random(seed)
    timed: list[tuple[int, dict[str, Any]]] = []

    def add(event: dict[str, Any]) -> None:
        timed.append((event["event_time_ms"] + rng.randint(0, MAX_DISORDER_MS), event))

    for r in range(requests):
        rid, t_i = f"r{r}", T0 + r * 1_500 + rng.randint(0, 1_000)
        snapshot = rng.random()
        if snapshot < 0.7:
            add({"type": "feature_snapshot", "request_id": rid, "event_time_ms": t_i + rng.randint(0, 2_000),
                 "sparse": {"city": rng.choice(["bj", "sh"])}, "dense": {"u_ctr_7d": round(rng.random(), 3)}})
        elif snapshot < 0.8:  # logged too late to be joined
            add({"type": "feature_snapshot", "request_id": rid, "event_time_ms": t_i + SNAPSHOT_WAIT_MS + 8_000,
                 "sparse": {"city": "late"}, "dense": {}})
        for k in range(rng.randint(1, 3)):
            iid = f"{rid}-i{k}"
            impression = {"type": "impression", "request_id": rid, "impression_id": iid, "user_id": f"u{r % 17}",
                          "item_id": f"v{rng.randint(0, 50)}", "event_time_ms": t_i, "position": k,
                          "context": {"page": "feed"}}
            add(impression)
            if rng.random() < 0.05:
                add(dict(impression))
            kind = rng.random()
            if kind < 0.55:
                continue
            if kind < 0.8:
                delay = rng.randint(0, WINDOW_MS)
            elif kind < 0.93:
                delay = rng.randint(WINDOW_MS + 1, HORIZON_MS)
            else:
                delay = rng.randint(HORIZON_MS + 1, HORIZON_MS + 60_000)
            label = {"type": "label", "request_id": rid, "impression_id": iid, "label_type": "click",
                     "event_time_ms": t_i + delay, "value": 1.0}
            add(label)
            if rng.random() < 0.1:
                add({**label, "event_time_ms": label["event_time_ms"] + rng.randint(1, 20_000)})
            if rng.random() < 0.1:
                add({**label, "label_type": "like"})
        if rng.random() < 0.03:
            add({"type": "label", "request_id": rid, "impression_id": f"{rid}-ghost", "label_type": "click",
                 "event_time_ms": t_i + 2_000, "value": 1.0})
    timed.sort(key=lambda pair: pair[0])
    return [event for _, event in timed]


def oracle(events: list[dict[str, Any]]) -> tuple[Counter[str], Counter[tuple[str, str]], int]:
    """Expected samples (as canonical JSON), unmatched (impression, reason-set), ignored-label count."""
    impressions: dict[str, dict[str, Any]] = {}
    snapshots: dict[str, dict[str, Any]] = {}
    labels: dict[str, list[dict[str, Any]]] = {}
    ignored = 0
    unmatched: Counter[tuple[str, str]] = Counter()
    for event in events:
        if event["type"] == "impression":
            impressions.setdefault(event["impression_id"], event)
        elif event["type"] == "feature_snapshot":
            snapshots.setdefault(event["request_id"], event)
        elif event["label_type"] != "click":
            ignored += 1
        else:
            labels.setdefault(event["impression_id"], []).append(event)
    samples: Counter[str] = Counter()
    for iid, imp in impressions.items():
        t_i = imp["event_time_ms"]
        snap = snapshots.get(imp["request_id"])
        joined = snap is not None and snap["event_time_ms"] <= t_i + SNAPSHOT_WAIT_MS

        def sample(attribution: str, label: dict[str, Any] | None, imp: dict[str, Any] = imp, t_i: int = t_i,
                   snap: dict[str, Any] | None = snap, joined: bool = joined) -> None:
            t_l = label["event_time_ms"] if label else None
            samples[json.dumps({
                "sample_id": f"{imp['impression_id']}:click:{attribution}", "task": "click",
                "request_id": imp["request_id"], "impression_id": imp["impression_id"], "user_id": imp["user_id"],
                "item_id": imp["item_id"], "position": imp["position"], "context": imp["context"],
                "impression_time_ms": t_i, "label": 0 if attribution == "NEGATIVE" else 1,
                "attribution": attribution, "label_time_ms": t_l, "delay_ms": None if t_l is None else t_l - t_i,
                "emit_time_ms": t_i + WINDOW_MS if t_l is None else t_l,
                "sparse": snap["sparse"] if joined and snap else {}, "dense": snap["dense"] if joined and snap else {},
                "has_snapshot": joined,
            }, sort_keys=True)] += 1

        first, *repeats = labels.pop(iid, [None])
        if first is None:
            sample("NEGATIVE", None)
            continue
        delay = first["event_time_ms"] - t_i
        for _ in repeats:  # once the impression's state is dropped, a repeat finds no impression
            unmatched[(iid, "duplicate" if delay <= HORIZON_MS else "duplicate|no_impression")] += 1
        if delay <= WINDOW_MS:
            sample("POSITIVE", first)
        else:
            sample("NEGATIVE", None)
            if delay <= HORIZON_MS:
                sample("LATE_POSITIVE", first)
            else:  # the state may or may not still be there when it arrives: both reasons are contract
                unmatched[(iid, "beyond_horizon|no_impression")] += 1
    for iid, orphan_labels in labels.items():
        unmatched[(iid, "no_impression|duplicate")] += len(orphan_labels)
    return samples, unmatched, ignored


def run_replay(events: list[dict[str, Any]], tmp_path: Path, *extra: str) -> tuple[list[Any], list[Any]]:
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("".join(json.dumps(e) + "\n" for e in events))
    out, unmatched = tmp_path / "samples.jsonl", tmp_path / "unmatched.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "jobs.sample_join", "replay", "--events", str(events_file), "--out", str(out),
         "--unmatched", str(unmatched), "--task", "click", "--window", "1m", "--horizon", "10m", *extra],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    read = lambda path: [json.loads(line) for line in path.read_text().splitlines() if line.strip()]  # noqa: E731
    return read(out), read(unmatched)


CONTRACT_FIELDS = ("sample_id", "task", "request_id", "impression_id", "user_id", "item_id", "position", "context",
                   "impression_time_ms", "label", "attribution", "label_time_ms", "delay_ms", "emit_time_ms",
                   "sparse", "dense", "has_snapshot")


def assert_matches_oracle(events: list[dict[str, Any]], samples: list[dict[str, Any]],
                          unmatched: list[dict[str, Any]]) -> None:
    expected, expected_unmatched, _ = oracle(events)
    got = Counter(json.dumps({k: s[k] for k in CONTRACT_FIELDS}, sort_keys=True) for s in samples)
    missing, extra = expected - got, got - expected
    assert not missing and not extra, f"missing {list(missing)[:3]}\nextra {list(extra)[:3]}"
    assert len({s["sample_id"] for s in samples}) == len(samples)
    assert len(unmatched) == sum(expected_unmatched.values())
    allowed: dict[str, set[str]] = {}
    for iid, reasons in expected_unmatched:
        allowed.setdefault(iid, set()).update(reasons.split("|"))
    for record in unmatched:
        assert record["reason"] in allowed[record["impression_id"]], record


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_local_replay_matches_the_contract_oracle(seed: int, tmp_path: Path) -> None:
    events = make_stream(seed)
    samples, unmatched = run_replay(events, tmp_path, "--engine", "local")
    assert_matches_oracle(events, samples, unmatched)
    attributions = Counter(s["attribution"] for s in samples)
    assert min(attributions["POSITIVE"], attributions["NEGATIVE"], attributions["LATE_POSITIVE"]) > 0


@pytest.mark.flink
@pytest.mark.slow
@pytest.mark.parametrize("parallelism", ["1", "2"])
def test_flink_replay_matches_the_contract_oracle(parallelism: str, tmp_path: Path) -> None:
    events = make_stream(7, requests=150)
    samples, unmatched = run_replay(events, tmp_path, "--engine", "flink", "--parallelism", parallelism)
    assert_matches_oracle(events, samples, unmatched)
