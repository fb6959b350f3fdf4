"""Benchmark of the embedded runtime (docs/performance.md): ``python -m jobs.bench_embedded``.

On one generated event mix, written once to the three event topics (Avro, keyed by request_id):

1. **passthrough** — the same consumer settings, codec and producer settings as the runtime, doing
   only decode → encode → produce of every record (the ceiling for any Kafka → Kafka job here);
2. **embedded** — the runtime itself: decode, the join core, samples and unmatched out, Redis
   checkpoints every ``--checkpoint-interval``.

Both are timed from their first input record to their last one processed (the group join before
and the bounded mode's idle wait after are not the job's throughput); the target is
embedded ≥ 60% of passthrough. Then a **freshness** run: the runtime runs as its own process while
events are produced live on an accelerated clock; for every click label the time from handing it to
the producer to its POSITIVE sample being readable on the samples topic (target p99 < 1 s). State
bytes per pending impression are taken from the runtime's checkpoints.

An Apache Kafka broker and a redis-server are started on free loopback ports unless
``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` point elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jobs.config import SampleJoinConfig
from jobs.generate import GeneratorConfig, KafkaTarget
from jobs.generate import run as generate
from jobs.runtime.embedded import POLL_BATCH, POLL_TIMEOUT_S, EmbeddedRuntime
from jobs.runtime.kafka_io import consumer_settings, producer_settings

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Topics:
    tag: str
    partitions: int

    @property
    def impressions(self) -> str:
        return f"bench.impressions.{self.tag}"

    @property
    def snapshots(self) -> str:
        return f"bench.feature_snapshots.{self.tag}"

    @property
    def labels(self) -> str:
        return f"bench.labels.{self.tag}"

    @property
    def inputs(self) -> list[str]:
        return [self.impressions, self.snapshots, self.labels]

    @property
    def samples_prefix(self) -> str:
        return f"bench.samples.{self.tag}."


@contextlib.contextmanager
def services(log_dir: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, redis url): the environment's, or a broker and a redis-server started here."""
    from infra.local import free_port, start_broker, start_redis

    started = []
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = start_broker(free_port(), log_dir / "broker.log")
            started.append(broker)
            bootstrap = broker.address
        url = os.environ.get("REDIS_URL")
        if not url:
            server = start_redis(free_port(), log_dir / "redis.log")
            started.append(server)
            url = server.address
        yield bootstrap, url
    finally:
        for proc in reversed(started):
            proc.stop()


def runtime_config(
    bootstrap: str, redis_url: str, topics: Topics, window: str, horizon: str, interval: str, **local: Any
) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"bench-embedded-{uuid.uuid4().hex[:8]}",
            "topics": {
                "impressions": topics.impressions,
                "feature_snapshots": topics.snapshots,
                "labels": topics.labels,
                "samples_prefix": topics.samples_prefix,
                "unmatched": f"bench.unmatched.{topics.tag}",
                "deadletter": f"bench.deadletter.{topics.tag}",
            },
        },
        "redis": {"url": redis_url, "key_prefix": f"bench-{topics.tag}"},
        "join": {"tasks": [{"name": "click", "window": window, "horizon": horizon}]},
        "checkpoint": {"interval": interval},
        "local": local,
    }


def passthrough(bootstrap: str, topics: Topics, expected: int) -> dict[str, Any]:
    """decode -> encode -> produce of every input record, with the runtime's client settings and codec."""
    from confluent_kafka import Consumer, KafkaError, Producer

    from common.topics import create_topics
    from schemas.codec import Codec

    out = f"bench.passthrough.{topics.tag}"
    create_topics(bootstrap, {out: (topics.partitions, 0)})
    codec = Codec.default()
    decode, encode = codec.decode, codec.encode
    consumer = Consumer(consumer_settings(bootstrap, f"bench-passthrough-{uuid.uuid4().hex[:8]}", {}))
    producer = Producer(producer_settings(bootstrap, {"delivery.report.only.error": True}))
    consumer.subscribe(topics.inputs)
    produce, poll = producer.produce, producer.poll
    n = 0
    first = last = 0.0
    cpu_first = cpu_last = 0.0
    deadline = time.monotonic() + 600
    try:
        while n < expected and time.monotonic() < deadline:
            messages = consumer.consume(POLL_BATCH, POLL_TIMEOUT_S)
            if not messages:
                continue
            now = time.monotonic()
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(err.str())
                    continue
                if not first:
                    first = now
                    cpu_first = time.process_time()
                name, record = decode(msg.value() or b"")
                value = encode(name, record)
                while True:
                    try:
                        produce(out, value, msg.key())
                        break
                    except BufferError:
                        poll(0.05)
                n += 1
            poll(0)
            last = time.monotonic()
            cpu_last = time.process_time()
        flush_started = time.monotonic()
        producer.flush(60)
        flushed = time.monotonic()
    finally:
        consumer.close()
    seconds = last - first
    cpu = cpu_last - cpu_first
    return {
        "events": n,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1) if seconds > 0 else None,
        "cpu_seconds": round(cpu, 3),
        "events_per_cpu_s": round(n / cpu, 1) if cpu > 0 else None,
        "final_flush_seconds": round(flushed - flush_started, 3),
    }


def embedded(config: dict[str, Any]) -> dict[str, Any]:
    runtime = EmbeddedRuntime(SampleJoinConfig.model_validate(config))
    runtime.connect()
    summary = runtime.run()
    seconds = summary.active_seconds
    cpu = summary.active_cpu_seconds
    return {
        "events": summary.events_in,
        "seconds": seconds,
        "events_per_s": round(summary.events_in / seconds, 1) if seconds > 0 else None,
        "cpu_seconds": cpu,
        "events_per_cpu_s": round(summary.events_in / cpu, 1) if cpu > 0 else None,
        "samples_out": summary.samples_out,
        "by_attribution": summary.by_attribution,
        "unmatched": summary.unmatched,
        "checkpoints": summary.checkpoints,
        "checkpoint_seconds": summary.checkpoint_seconds,
        "state_bytes_per_pending_impression": (
            round(summary.state_bytes_per_pending_impression, 1) if summary.state_bytes_per_pending_impression else None
        ),
    }


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
            window_ms=_ms(window),
            horizon_ms=_ms(horizon),
            snapshot_missing=0.0,
            late_fraction=0.0,
            beyond_horizon_fraction=0.0,
            delay_mean_ms=_ms(window) // 10,
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


def replay_peers(events_file: Path) -> dict[str, Any]:
    """``python -m jobs.bench replay`` (the replay benchmark's Flink SQL peer and local replay) on the
    same events, as JSON lines: events/s beside the runtime's (file in, no Kafka, so not a like-for-like
    ratio; docs/performance.md reports the runtime against the passthrough)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.bench.replay",
            "replay",
            "--events",
            str(events_file),
            "--contender",
            "flink-sql",
            "--contender",
            "local",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        return {"skipped": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"skipped": "no JSON from jobs.bench"}
    return {
        r["name"]: (
            {"skipped": r["skipped"]} if r.get("skipped") else {"events_per_s": round(r["events_per_second"], 1)}
        )
        for r in data.get("results", [])
    }


def _ms(text: str) -> int:
    from common.config import parse_duration_ms

    return parse_duration_ms(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.bench_embedded", description=__doc__.split("\n")[0])
    p.add_argument("--impressions", type=int, default=100_000, help="stream size for the throughput runs")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--rate", type=float, default=50.0, help="impressions per second of event time")
    p.add_argument("--window", default="1m")
    p.add_argument("--horizon", default="10m")
    p.add_argument("--checkpoint-interval", default="5s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--freshness-impressions", type=int, default=20_000)
    p.add_argument("--speedup", type=float, default=20.0, help="event-time ms per wall ms in the freshness run")
    p.add_argument("--repeat", type=int, default=3, help="runs of each contender (alternating); the best counts")
    p.add_argument("--skip-freshness", action="store_true")
    p.add_argument("--skip-peer", action="store_true", help="do not run the Flink SQL peer / local replay")
    p.add_argument(
        "--runtime-log",
        default=".bench/embedded-freshness-runtime.log",
        help="the freshness run's runtime log (JSON lines)",
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)

    from common.topics import create_topics

    results: dict[str, Any] = {"impressions": args.impressions, "partitions": args.partitions}
    with (
        tempfile.TemporaryDirectory(prefix="bench-embedded-") as tmp_name,
        services(Path(tmp_name)) as (
            bootstrap,
            redis_url,
        ),
    ):
        tmp = Path(tmp_name)
        topics = Topics(uuid.uuid4().hex[:8], args.partitions)
        create_topics(bootstrap, {t: (topics.partitions, 0) for t in topics.inputs})
        print(f"bench_embedded: writing {args.impressions} impressions to {bootstrap} ...", file=sys.stderr)
        gen = GeneratorConfig(
            impressions=args.impressions,
            seed=args.seed,
            rate=args.rate,
            window_ms=_ms(args.window),
            horizon_ms=_ms(args.horizon),
            delay_mean_ms=_ms(args.window) // 6,
        )
        events_file = tmp / "events.jsonl"
        stats = generate(
            gen, out=str(events_file), kafka=KafkaTarget(bootstrap, topics.impressions, topics.snapshots, topics.labels)
        )
        results["events"] = stats.events
        results["event_mix"] = stats.by_type
        runs: dict[str, list[dict[str, Any]]] = {"passthrough": [], "embedded": []}
        for i in range(args.repeat):  # alternate the two, keep the best of each (a shared machine is noisy)
            print(f"bench_embedded: passthrough ({i + 1}/{args.repeat}) ...", file=sys.stderr)
            runs["passthrough"].append(passthrough(bootstrap, topics, stats.events))
            print(f"bench_embedded: embedded runtime ({i + 1}/{args.repeat}) ...", file=sys.stderr)
            config = runtime_config(
                bootstrap, redis_url, topics, args.window, args.horizon, args.checkpoint_interval, exit_when_idle="1s"
            )
            runs["embedded"].append(embedded(config))
        for name, rs in runs.items():
            results[name] = max(rs, key=lambda r: r["events_per_s"] or 0)
            results[name]["all_events_per_s"] = [r["events_per_s"] for r in rs]
        pt, em = results["passthrough"]["events_per_s"], results["embedded"]["events_per_s"]
        results["ratio_embedded_to_passthrough"] = round(em / pt, 3) if pt and em else None
        pt_cpu, em_cpu = results["passthrough"]["events_per_cpu_s"], results["embedded"]["events_per_cpu_s"]
        results["cpu_ratio_embedded_to_passthrough"] = round(em_cpu / pt_cpu, 3) if pt_cpu and em_cpu else None
        if not args.skip_peer:
            print(
                "bench_embedded: Flink SQL interval-join peer and local replay on the same events ...", file=sys.stderr
            )
            results["replay_peers"] = replay_peers(events_file)
        if not args.skip_freshness:
            print("bench_embedded: freshness (live, accelerated clock) ...", file=sys.stderr)
            results["freshness"] = freshness(bootstrap, redis_url, tmp, args.window, args.horizon, args)

    pt, em = results["passthrough"], results["embedded"]
    lines = [
        f"events: {results['events']} ({args.impressions} impressions, {args.partitions} partitions)",
        f"{'passthrough':<12} {pt['events_per_s']:>12,.0f} events/s  ({pt['seconds']} s; "
        f"{pt['events_per_cpu_s']:,.0f} events per CPU-second)",
        f"{'embedded':<12} {em['events_per_s']:>12,.0f} events/s  ({em['seconds']} s, {em['checkpoints']} checkpoints; "
        f"{em['events_per_cpu_s']:,.0f} events per CPU-second)",
        f"ratio embedded/passthrough: {results['ratio_embedded_to_passthrough']} by wall time (target >= 0.6), "
        f"{results['cpu_ratio_embedded_to_passthrough']} by CPU time; best of {args.repeat} each",
        f"state bytes per pending impression: {em['state_bytes_per_pending_impression']}",
    ]
    peers = results.get("replay_peers") or {}
    for name, r in peers.items():
        if isinstance(r, dict) and r.get("events_per_s"):
            lines.append(
                f"{'replay ' + name:<12} {r['events_per_s']:>12,.0f} events/s  (same events, file in; jobs.bench)"
            )
    fr = results.get("freshness")
    if fr and fr.get("positives_seen"):
        lines.append(
            f"freshness label -> POSITIVE sample: p50 {fr['p50_s']} s, p99 {fr['p99_s']} s, max {fr['max_s']} s "
            f"over {fr['positives_seen']} positives (target p99 < 1 s)"
        )
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
