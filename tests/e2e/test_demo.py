"""`make demo`, shortened: the whole loop live, then its report checked against the generator's truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_short_demo_publishes_and_its_report_agrees_with_the_truth(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "infra.demo", "--minutes", "3", "--dir", str(out)],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert processes_mentioning(str(out)) == []  # every child and service stopped

    report = json.loads((out / "report.json").read_text())
    truth = [json.loads(line) for line in (out / "truth.jsonl").open()]
    counts = report["counts"]
    assert counts["truth_impressions"] == len(truth) > 0
    assert all(counts["checks"].values()), counts
    assert counts["distinct_sample_ids"] == counts["sample_records"]
    assert report["label_to_sample_latency"]["count"] > 0

    versions = report["versions"]
    assert any(v["status"] == "published" for v in versions["versions"]) and versions["current"] is not None
    holdout = report["holdout"]
    assert holdout["impressions"] > 0
    # Held out: impressions the sidecars never saw, labelled with their TRUE click, not the stream's.
    held = {json.loads(line)["impression_id"] for line in (out / "holdout.jsonl").open()}
    truth_of = {row["impression_id"]: row for row in truth}
    assert all(truth_of[i]["impression_time_ms"] > report["plan"]["seen_until_ms"] for i in held)
    assert holdout["positives"] == sum(1 for i in held if truth_of[i]["clicked"])
    corrected, naive = holdout["corrected_pu"], holdout["naive"]
    assert corrected["count"] == naive["count"] == holdout["impressions"]
    # Both published models predict at a sane level on impressions they never saw, and the PU model's
    # level is nearer the truth than the naive one's (which counts every late click's fake negative).
    print(f"\n[demo] held-out bias: PU {corrected['prediction_bias']:.3f}, naive {naive['prediction_bias']:.3f}; "
          f"AUC: PU {corrected['auc']:.4f}, naive {naive['auc']:.4f}")
    for scores in (corrected, naive):
        assert 0.5 < scores["prediction_bias"] < 2.0 and 0.6 < scores["auc"] < 1.0, (corrected, naive)
    assert abs(corrected["prediction_bias"] - 1.0) < abs(naive["prediction_bias"] - 1.0), (corrected, naive)
    assert (out / "report.png").stat().st_size > 0

