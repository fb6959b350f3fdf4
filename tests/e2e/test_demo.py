"""`make demo`, shortened: the whole loop live, then its report checked against the generator's truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.demo.day import day_generator, generator_config
from infra.demo.plan import DAY_MS, START_MS, DemoPlan
from jobs.synthetic import Generator

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_previous_day_is_the_live_world_with_its_own_draws() -> None:
    """The day-level model must learn the live stream's click model, not see the live stream itself."""
    plan = DemoPlan.for_minutes(3, seed=3, day_impressions=400)
    day_truth: list[dict] = []
    live_truth: list[dict] = []
    day = day_generator(plan, day_truth.append)
    live = Generator(generator_config(plan.live_generator_flags()), live_truth.append)
    assert day.model == live.model  # one world: the same users, items, click probabilities
    for gen in (day, live):
        for _ in gen.events():
            pass
    assert len(day_truth) == plan.day_impressions
    assert all(START_MS - DAY_MS <= row["impression_time_ms"] < START_MS for row in day_truth)

    def draws(rows: list[dict]) -> list[tuple]:
        return [(r["user_id"], r["item_id"], r["clicked"]) for r in rows[:200]]

    assert draws(day_truth) != draws(live_truth)  # with the live seed's draws they would be equal
    assert all(row["impression_id"].startswith(f"day-{plan.seed}.") for row in day_truth)


@pytest.mark.slow
@pytest.mark.integration
def test_short_demo_publishes_and_its_report_agrees_with_the_truth(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "infra.demo", "--duration", "3m", "--dir", str(out)],
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

    # Both sidecars started from the day-level model (the daily hot start), fitted well under a minute.
    day = report["day_model"]
    assert day["samples"] > day["impressions"] > 0 and day["fit_s"] < 60, day
    for log in ("trainer.log", "trainer-naive.log"):
        assert f"warm start from export {day['export']}" in (out / "logs" / log).read_text(), log

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
    # Both published models predict at a sane level on impressions they never saw, and from the same
    # start the PU model's level is nearer the truth than the naive one's (which trained on every late
    # click's fake negative); the report says so.
    print(f"\n[demo] held-out bias: PU {corrected['prediction_bias']:.3f}, naive {naive['prediction_bias']:.3f}, "
          f"day-level start {holdout['day_model']['prediction_bias']:.3f}; "
          f"AUC: PU {corrected['auc']:.4f}, naive {naive['auc']:.4f}")
    for scores in (corrected, naive, holdout["day_model"]):
        assert 0.5 < scores["prediction_bias"] < 2.0 and 0.6 < scores["auc"] < 1.0, (corrected, naive)
    assert abs(corrected["prediction_bias"] - 1.0) < abs(naive["prediction_bias"] - 1.0), (corrected, naive)
    assert holdout["nearer_bias_1"] == "corrected_pu"
    assert "the corrected PU model is nearer 1" in " ".join(done.stdout.split())  # rich wraps long lines
    assert (out / "report.png").stat().st_size > 0

