"""The demo's report: what reached Kafka checked against the generator's truth, label-to-sample
latency, the versions, and the held-out scores of the corrected and the naive model."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.cat import read_topics, to_json
from infra.demo.plan import DemoPlan

SAMPLES_TOPIC = "samples.click"
TRUTH_MARGIN_MS = 60_000  # holdout impressions start this long after the last event the sidecar could see


@dataclass
class StreamDump:
    samples: list[dict[str, Any]]  # in (partition, offset) order, each with its Kafka timestamp as "_kafka_ms"
    unmatched: Counter[str]
    deadlettered: int
    first_click_ms: dict[str, int]  # impression_id -> Kafka timestamp of its first click label


def dump_stream(bootstrap: str) -> StreamDump:
    from schemas import Codec, DecodeError

    codec = Codec.default()
    samples: list[dict[str, Any]] = []
    unmatched: Counter[str] = Counter()
    deadlettered = 0
    first_click: dict[str, int] = {}
    topics = [SAMPLES_TOPIC, "samples.unmatched", "deadletter", "events.labels"]
    for topic, _, _, timestamp_ms, value in read_topics(bootstrap, topics):
        if topic == "deadletter":
            deadlettered += 1
            continue
        try:
            record = to_json(codec, value)
        except DecodeError:
            continue  # the join dead-letters these itself; counted there
        if topic == SAMPLES_TOPIC:
            record["_kafka_ms"] = timestamp_ms
            samples.append(record)
        elif topic == "samples.unmatched":
            unmatched[str(record.get("reason"))] += 1
        elif record.get("label_type") == "click":
            iid = str(record["impression_id"])
            first_click[iid] = min(timestamp_ms, first_click.get(iid, timestamp_ms))
    return StreamDump(samples, unmatched, deadlettered, first_click)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(dump: StreamDump) -> dict[str, Any]:
    """Wall time from a click label reaching Kafka to its (late) positive sample reaching Kafka."""
    delays = [
        float(s["_kafka_ms"] - dump.first_click_ms[s["impression_id"]])
        for s in dump.samples
        if s["attribution"] != "NEGATIVE" and s["impression_id"] in dump.first_click_ms
    ]
    return {"count": len(delays), "p50_ms": percentile(delays, 0.5), "p99_ms": percentile(delays, 0.99)}


def read_truth(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def check_counts(dump: StreamDump, truth: list[dict[str, Any]], plan: DemoPlan) -> dict[str, Any]:
    """The join contract's invariants, against the generator's truth."""
    by_attribution = Counter(s["attribution"] for s in dump.samples)
    distinct = {s["sample_id"] for s in dump.samples}
    resolved = {s["impression_id"] for s in dump.samples if s["attribution"] != "LATE_POSITIVE"}

    def delay(row: dict[str, Any]) -> int | None:
        return row["delay_ms"] if row["clicked"] else None

    in_window = sum(1 for r in truth if (d := delay(r)) is not None and d <= plan.window_ms)
    late = sum(1 for r in truth if (d := delay(r)) is not None and plan.window_ms < d <= plan.horizon_ms)
    counts = {
        "truth_impressions": len(truth),
        "truth_clicks_within_window": in_window,
        "truth_clicks_late": late,
        "samples": dict(by_attribution),
        "sample_records": len(dump.samples),
        "distinct_sample_ids": len(distinct),
        "unmatched": dict(dump.unmatched),
        "deadlettered": dump.deadlettered,
    }
    counts["checks"] = {
        "every_impression_resolved_once": len(resolved) == len(truth)
        and by_attribution["POSITIVE"] + by_attribution["NEGATIVE"] == len(truth),
        "positives_match_truth": by_attribution["POSITIVE"] == in_window,
        "late_positives_match_truth": by_attribution["LATE_POSITIVE"] == late,
    }
    return counts


def holdout_rows(dump: StreamDump, truth: list[dict[str, Any]], seen_until_ms: int, window_ms: int) -> list[dict]:
    """One row per impression the sidecar never saw: its sample's features, its TRUE label."""
    first_sample: dict[str, dict[str, Any]] = {}
    for s in dump.samples:
        if s["attribution"] != "LATE_POSITIVE":
            first_sample.setdefault(s["impression_id"], s)
    rows = []
    for row in truth:
        sample = first_sample.get(row["impression_id"])
        if sample is None or row["impression_time_ms"] <= seen_until_ms + TRUTH_MARGIN_MS:
            continue
        features = {k: v for k, v in sample.items() if k != "_kafka_ms"}
        t_i = int(row["impression_time_ms"])
        if row["clicked"]:
            label_time = t_i + int(row["delay_ms"])
            truth_fields = {"label": 1, "attribution": "POSITIVE", "label_time_ms": label_time,
                            "delay_ms": int(row["delay_ms"]), "emit_time_ms": label_time}
        else:
            truth_fields = {"label": 0, "attribution": "NEGATIVE", "label_time_ms": None, "delay_ms": None,
                            "emit_time_ms": t_i + window_ms}
        rows.append({**features, **truth_fields,
                     "sample_id": f"{row['impression_id']}:{sample['task']}:{truth_fields['attribution']}"})
    return rows


def nearer_bias_1(corrected: dict[str, Any] | None, naive: dict[str, Any] | None) -> str | None:
    """Which model's held-out prediction bias is nearer 1 (a tie counts for naive: the correction must
    earn it); None when either has no scores."""
    if not corrected or not naive:
        return None
    return "corrected_pu" if abs(corrected["prediction_bias"] - 1) < abs(naive["prediction_bias"] - 1) else "naive"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from common.output import AtomicFile

    with AtomicFile(path) as out:
        for row in rows:
            out.file.write((json.dumps(row) + "\n").encode())
        out.commit()


def plot(series: list[dict[str, Any]], versions: list[dict[str, Any]], path: Path) -> None:
    """Progressive AUC and bias over wall time, with the moments versions were published or refused."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_auc, ax_bias) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    points = [p for p in series if p["progressive_auc"] and p["samples_trained"]]  # gauges start at 0
    xs = [p["wall_s"] for p in points]
    ax_auc.plot(xs, [p["progressive_auc"] for p in points], color="tab:blue")
    ax_auc.set_ylabel("progressive AUC")
    ax_bias.plot(xs, [p["progressive_bias"] for p in points], color="tab:orange")
    ax_bias.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax_bias.set_ylabel("prediction bias")
    ax_bias.set_xlabel("wall time (s)")
    marks = defaultdict(list)
    for before, after in itertools.pairwise(series):
        if after["published"] > before["published"]:
            marks["published"].append(after["wall_s"])
        if after["refused"] > before["refused"]:
            marks["refused"].append(after["wall_s"])
    for kind, color in (("published", "tab:green"), ("refused", "tab:red")):
        for i, x in enumerate(marks[kind]):
            for ax in (ax_auc, ax_bias):
                ax.axvline(x, color=color, linewidth=0.8, linestyle="--", label=f"version {kind}" if i == 0 else None)
    if marks:
        ax_auc.legend(loc="lower right", fontsize="small")
    fig.suptitle(f"trainer sidecar: {len(versions)} versions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
