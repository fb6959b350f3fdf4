"""`make soak` end to end, short: its report holds figures over time, no loss, and nothing is left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.integration
def test_soak_reports_throughput_lag_memory_and_no_loss(tmp_path: Path) -> None:
    report_file = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.bench.soak", "--duration", "5s", "--rate", "100", "--every", "2s",
         "--json", str(report_file), "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    report = json.loads(report_file.read_text())
    print("\n" + proc.stdout)
    assert report["expected_samples"] > 300 and report["lost_samples"] == 0 and report["unexpected_samples"] == 0
    assert report["distinct_samples"] == report["expected_samples"]
    assert len(report["points"]) >= 3 and report["rss_mb_max"] > 0
    assert max(p["samples_out"] for p in report["points"]) > 0  # the runtime's metrics were scraped
    assert "loss: 0 of" in proc.stdout
    assert set(report["services"]) == {"broker", "redis", "runtime"}
    for name, pid in report["services"].items():
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"{name} (pid {pid}) still running"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def test_soak_rejects_bad_arguments_in_one_line() -> None:
    for argv in (["--duration", "0s"], ["--duration", "soon"], ["--rate", "-1"], ["--duration", "2d"]):
        proc = subprocess.run([sys.executable, "-m", "jobs.bench.soak", *argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env={**os.environ})
        assert proc.returncode == 2, argv
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
