"""`trainer run` end to end against the real broker and Redis, as a subprocess (real TF, CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sidecar_helpers import SidecarEnv, produce
from stream import stream

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def distinct(samples: list[dict[str, Any]]) -> int:
    return len({s["sample_id"] for s in samples})


def position(env: SidecarEnv) -> dict[str, Any] | None:
    path = env.model_dir / "checkpoints" / "sidecar.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def evaluate(model: Path, samples_file: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "evaluate", "--model", str(model), "--samples", str(samples_file), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # no TensorFlow chatter
    return json.loads(out.stdout)


def deadletters(bootstrap: str, source_topic: str) -> list[dict[str, Any]]:
    """Dead letters of ``source_topic`` (the deadletter topic is shared by the session's tests)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"dl-{time.time_ns()}", "enable.partition.eof": True}
    )
    consumer.assign([TopicPartition("deadletter", 0, OFFSET_BEGINNING)])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                break
            continue
        headers = {k: v.decode() for k, v in msg.headers() or []}
        if headers.get("source_topic") == source_topic:
            found.append({"value": msg.value(), "key": msg.key(), **headers})
    consumer.close()
    return found


def test_bounded_run_trains_each_distinct_sample_once(sidecar_env, tmp_path: Path) -> None:
    env: SidecarEnv = sidecar_env()
    samples = stream(1500, seed=1, users=60, items=30)
    positive = next(s for s in samples if s["attribution"] == "POSITIVE")
    bad = dict(positive, label=0)  # decodes, but breaks the Sample contract (a POSITIVE needs label 1)
    produce(env.bootstrap, env.topic, [*samples, *samples[:40], b"not avro", bad])
    result = env.run("--exit-when-idle", "3s")
    assert result.returncode == 0, result.stderr[-3000:]
    for line in result.stderr.splitlines():  # JSON logs only: no TensorFlow start-up chatter
        json.loads(line)
    summary = json.loads(result.stdout)
    assert summary["samples_trained"] == distinct(samples)
    assert summary["dedup_drops"] == 40 and summary["deadletters"] == 2
    versions = env.versions()
    assert versions and versions[-1]["samples_trained"] == distinct(samples)
    letters = deadletters(env.bootstrap, env.topic)
    assert [d["value"] for d in letters[:1]] == [b"not avro"] and len(letters) == 2
    assert letters[0]["source_partition"] == "0" and int(letters[0]["source_offset"]) == len(samples) + 40
    assert "single-object marker" in letters[0]["error"]
    assert "label must be 1 on POSITIVE" in letters[1]["error"]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(s) + "\n" for s in samples[-300:]))
    for record in versions:
        report = evaluate(env.model_dir / str(record["version"]), eval_file)
        assert report["count"] == 300 and report["logloss"] is not None
