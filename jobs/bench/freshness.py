"""Freshness of the embedded runtime, live: a label handed to the producer -> its POSITIVE sample readable.

The runtime runs as its own process (``python -m jobs.sample_join run --engine local``) while events
are produced on an accelerated clock; part of ``python -m jobs.bench.embedded`` (docs/performance.md).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from common.config import parse_duration_ms
from jobs.bench.stack import Topics, runtime_config
from jobs.generate import GeneratorConfig
from jobs.runtime.kafka_io import producer_settings

ROOT = Path(__file__).resolve().parents[2]


def freshness(
    bootstrap: str, redis_url: str, tmp: Path, window: str, horizon: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Label handed to the producer -> its POSITIVE sample readable on the samples topic, live."""
    from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

    from common.topics import create_topics
    from jobs.generate import Generator
    from jobs.runtime.kafka_io import WireFormat

    topics = Topics(uuid.uuid4().hex[:8], args.partitions)
    create_topics(bootstrap, {t: (topics.partitions, 0) for t in topics.inputs})
    samples_topic = f"{topics.samples_prefix}click"
    create_topics(bootstrap, {samples_topic: (topics.partitions, 0)})
    config = runtime_config(bootstrap, redis_url, topics, window, horizon, args.checkpoint_interval)
    path = tmp / "freshness.yaml"
    path.write_text(yaml.safe_dump(config))
    log_path = Path(args.runtime_log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.sample_join", "run", "--engine", "local", "--config", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        text=True,
    )
    seen: dict[str, float] = {}
    label_seen: dict[str, float] = {}
    stop = threading.Event()

    def read_samples() -> None:
        from schemas.codec import Codec

        codec = Codec.default()
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-fresh-{topics.tag}",
                "fetch.wait.max.ms": 5,
                "enable.auto.commit": False,
            }
        )
        consumer.assign(
            [TopicPartition(t, p, OFFSET_END) for t in (samples_topic, topics.labels) for p in range(topics.partitions)]
        )
        while not stop.is_set():
            for msg in consumer.consume(1000, 0.005):
                if msg.error() is None:
                    now = time.time()
                    if msg.topic() == topics.labels:  # when the label itself became readable
                        label = codec.decode(msg.value() or b"", "Label")
                        if label["label_type"] == "click":
                            label_seen.setdefault(label["impression_id"], now)
                        continue
                    sample = codec.decode(msg.value() or b"", "Sample")
                    if sample["attribution"] == "POSITIVE":
                        seen.setdefault(sample["impression_id"], now)
        consumer.close()

    reader = threading.Thread(target=read_samples, daemon=True)
    try:
        # wait until the runtime owns its partitions (its log says so)
        deadline = time.monotonic() + 60
        while "partitions assigned" not in log_path.read_text() and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the runtime exited: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        reader.start()
        time.sleep(1.0)
        cfg = GeneratorConfig(
            impressions=args.freshness_impressions,
            seed=args.seed + 1,
            rate=args.rate,
            window_ms=parse_duration_ms(window),
            horizon_ms=parse_duration_ms(horizon),
            snapshot_missing=0.0,
            late_fraction=0.0,
            beyond_horizon_fraction=0.0,
            delay_mean_ms=parse_duration_ms(window) // 10,
            start_ms=int(time.time() * 1000),
        )
        wire = WireFormat()
        producer = Producer(producer_settings(bootstrap, {"partitioner": "murmur2_random"}))
        sent: dict[str, float] = {}
        names = {"impression": topics.impressions, "feature_snapshot": topics.snapshots, "label": topics.labels}
        wall0 = time.monotonic()
        first_arrival = None
        for arrival, event in Generator(cfg).events():
            if first_arrival is None:
                first_arrival = arrival
            due = wall0 + (arrival - first_arrival) / 1000.0 / args.speedup
            delay = due - time.monotonic()
            if delay > 0.001:
                time.sleep(delay)
            value = wire.encode_event_json(event)
            producer.produce(names[event["type"]], value, event["request_id"].encode())
            producer.poll(0)
            if event["type"] == "label" and event["label_type"] == "click":
                sent.setdefault(event["impression_id"], time.time())
        producer.flush(30)
        time.sleep(3.0)
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()
        reader.join(5)
    latencies = sorted(seen[i] - t for i, t in sent.items() if i in seen)
    if not latencies:
        return {"labels": len(sent), "positives_seen": 0}
    # the same, split: producer -> label readable on its topic, and label readable -> sample readable
    to_label = sorted(label_seen[i] - t for i, t in sent.items() if i in label_seen)
    in_join = sorted(seen[i] - label_seen[i] for i in seen if i in label_seen)

    def pct(q: float, values: list[float] | None = None) -> float:
        v = latencies if values is None else values
        return round(v[min(len(v) - 1, int(q * len(v)))], 4) if v else float("nan")

    return {
        "labels": len(sent),
        "positives_seen": len(latencies),
        "p50_s": pct(0.50),
        "p90_s": pct(0.90),
        "p95_s": pct(0.95),
        "p99_s": pct(0.99),
        "max_s": round(latencies[-1], 4),
        "label_visible_p50_s": pct(0.5, to_label),
        "label_visible_p99_s": pct(0.99, to_label),
        "label_to_sample_p50_s": pct(0.5, in_join),
        "label_to_sample_p99_s": pct(0.99, in_join),
        "speedup": args.speedup,
    }
