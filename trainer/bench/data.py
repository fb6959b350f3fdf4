"""The delayed-feedback benchmark's data: generated events with known truth, joined, split at a time T."""

from __future__ import annotations

import argparse
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import TrainerError

ROOT = Path(__file__).resolve().parents[2]
GENERATOR_FLAGS = ("ctr", "late_fraction", "beyond_horizon_fraction", "users", "items")


def _run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise TrainerError(f"{' '.join(command[1:4])} failed ({result.returncode}): {' | '.join(tail)}")


@dataclass(frozen=True)
class Split:
    online: Path  # the samples emitted by the time the last training impression is served, in emission order
    offline: Path  # every sample of the training impressions (late positives however late)
    oracle: Path  # the training impressions, one sample each, true labels, in impression-time order
    test: Path  # the later impressions, one sample each, true labels
    stats: dict[str, Any]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
    return path


def split_samples(samples_path: Path, truth_path: Path, test_fraction: float, out_dir: Path) -> Split:
    """Split at the last training impression's time T; attach true labels to the oracle and test sets.

    The test set is the impressions after T. The online stream is what a live trainer has seen at T:
    the samples emitted by then (``emit_time_ms <= T``; the later clicks are still to come), in
    emission order. The offline set is every sample of the impressions up to T, however late.
    """
    truth = {}
    with open(truth_path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            truth[row["impression_id"]] = int(bool(row["clicked"]))
    with open(samples_path, encoding="utf-8") as fh:
        samples = [json.loads(line) for line in fh if line.strip()]
    times = sorted({s["impression_time_ms"] for s in samples})
    last = times[max(0, int(len(times) * (1.0 - test_fraction)) - 1)]
    offline = [s for s in samples if s["impression_time_ms"] <= last]
    online = sorted((s for s in samples if s["emit_time_ms"] <= last), key=lambda s: s["emit_time_ms"])

    def truly_labelled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for s in rows:
            if s["attribution"] == "LATE_POSITIVE":
                continue
            label = truth[s["impression_id"]]
            out.append({**s, "label": label, "attribution": "POSITIVE" if label else "NEGATIVE"})
        return out

    oracle = sorted(truly_labelled(offline), key=lambda s: s["impression_time_ms"])
    test = truly_labelled([s for s in samples if s["impression_time_ms"] > last])
    stats = {
        "online_samples": len(online),
        "online_late_positives": sum(s["attribution"] == "LATE_POSITIVE" for s in online),
        "offline_samples": len(offline),
        "offline_late_positives": sum(s["attribution"] == "LATE_POSITIVE" for s in offline),
        "train_impressions": len(oracle),
        "online_observed_ctr": sum(s["label"] for s in online) / max(1, len(online)),
        "train_true_ctr": sum(s["label"] for s in oracle) / max(1, len(oracle)),
        "test_impressions": len(test),
        "test_true_ctr": sum(s["label"] for s in test) / max(1, len(test)),
    }
    return Split(
        write_jsonl(out_dir / "online.jsonl", online),
        write_jsonl(out_dir / "offline.jsonl", offline),
        write_jsonl(out_dir / "oracle.jsonl", oracle),
        write_jsonl(out_dir / "test.jsonl", test),
        stats,
    )


def prepare_data(args: argparse.Namespace, seed: int, directory: Path, rate: float) -> Split:
    """Generate ``args.impressions`` at ``rate`` per second of event time, join them, split them."""
    directory.mkdir(parents=True, exist_ok=True)
    events, truth, samples = directory / "events.jsonl", directory / "truth.jsonl", directory / "samples.jsonl"
    python = str(args.jobs_python)
    generate = [python, "-m", "jobs.generate", "--out", str(events), "--truth", str(truth), "--quiet"]
    generate += ["--impressions", str(args.impressions), "--seed", str(seed), "--rate", f"{rate:.6f}"]
    generate += ["--run-id", ""]  # ids without a run prefix: a seed gives the same data (and results) every time
    for flag in GENERATOR_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            generate += [f"--{flag.replace('_', '-')}", str(value)]
    _run(generate)
    join = [python, "-m", "jobs.sample_join", "replay", "--events", str(events), "--out", str(samples)]
    _run([*join, "--window", "10m", "--horizon", "24h", "--quiet"])
    return split_samples(samples, truth, args.test_fraction, directory)


def train_rate(args: argparse.Namespace) -> float:
    """Impressions per second such that the training impressions span ``--train-hours``."""
    return args.impressions * (1.0 - args.test_fraction) / (args.train_hours * 3600.0)


def drop_negatives(rows: list[dict[str, Any]], fraction: float, seed: int) -> list[dict[str, Any]]:
    """The stream with ``fraction`` of its NEGATIVEs dropped at random (and nothing reweighted)."""
    import numpy as np

    keep = np.random.default_rng(seed).random(len(rows)) >= fraction
    return [s for s, k in zip(rows, keep, strict=True) if k or s["attribution"] != "NEGATIVE"]
