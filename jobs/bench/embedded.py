"""Benchmark of the embedded runtime (docs/performance.md): ``python -m jobs.bench.embedded``.

On one generated event mix, written once to the three event topics (Avro, keyed by request_id):

1. **passthrough** — the same consumer settings and producer settings as the runtime, doing only
   decode → encode → produce of every record with the runtime's own codec path: the native decoder
   (``schemas/native.py``) and the encoders compiled from the schemas (``schemas/compiled.py``), the
   generic codec for what they do not take. This is the ceiling for any Kafka → Kafka job here, and
   the target's baseline;
2. **passthrough (generic codec)** — the same, through the generic codec (``schemas.Codec``: the
   native decoder, fastavro's writer) only: reported beside, not the target's baseline;
3. **embedded** — the runtime itself: decode, the join core, samples and unmatched out, Redis
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

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.config import parse_duration_ms
from common.output import write_atomic
from common.topics import create_topics
from jobs.bench.freshness import freshness
from jobs.bench.stack import Topics, runtime_config, services
from jobs.config import SampleJoinConfig
from jobs.generate import GeneratorConfig, KafkaTarget
from jobs.generate import run as generate
from jobs.runtime.embedded.runtime import POLL_BATCH, POLL_TIMEOUT_S, EmbeddedRuntime
from jobs.runtime.kafka_io import consumer_settings, producer_settings
from schemas import native
from schemas.codec import HEADER_SIZE, MAGIC, Codec
from schemas.compiled import Unsupported, compile_encoder
from schemas.records import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[2]


def compiled_recoder(codec: Codec) -> Callable[[bytes], bytes]:
    """Message value -> the same record re-encoded, the way the runtime decodes events and encodes
    samples: each input event's current schema read by the native decoder (``schemas/native.py``),
    written by the encoder compiled from it (``schemas/compiled.py``); the generic codec for other
    versions, bytes the native decoder refuses, or a schema either does not take."""
    paths: dict[bytes, tuple[Callable[[bytes], tuple[Any, ...]], Callable[[Any], Any], Callable[[Any], bytes]]] = {}
    for name in EVENT_TYPES.values():
        schema = codec.schema(name)
        header = MAGIC + codec.fingerprint(name)
        read = native.fields_decoder(schema, HEADER_SIZE)
        if read is not None:
            record = namedtuple(name, [f["name"] for f in schema["fields"]])  # type: ignore[misc]
            with contextlib.suppress(Unsupported):
                paths[header] = (read, record._make, compile_encoder(schema, header))
    decode, encode, malformed = codec.decode, codec.encode, native.Malformed

    def recode(value: bytes) -> bytes:
        path = paths.get(value[:HEADER_SIZE])
        if path is not None:
            read, make, write = path
            try:
                return write(make(read(value)))
            except malformed:
                pass
        return encode(*decode(value))

    return recode


def generic_recoder(codec: Codec) -> Callable[[bytes], bytes]:
    """Message value -> the same record re-encoded, through the generic codec only."""
    decode, encode = codec.decode, codec.encode
    return lambda value: encode(*decode(value))


def passthrough(
    bootstrap: str, topics: Topics, expected: int, recoder: Callable[[Codec], Callable[[bytes], bytes]]
) -> dict[str, Any]:
    """decode -> encode -> produce of every input record, with the runtime's client settings."""
    from confluent_kafka import Consumer, KafkaError, Producer

    out = f"bench.passthrough.{topics.tag}"
    create_topics(bootstrap, {out: (topics.partitions, 0)})
    recode = recoder(Codec.default())
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
                value = recode(msg.value() or b"")
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


def replay_peers(events_file: Path) -> dict[str, Any]:
    """``python -m jobs.bench.replay`` (the replay benchmark's Flink SQL peer and local replay) on the
    same events, as JSON lines: events/s beside the runtime's (file in, no Kafka, so not a like-for-like
    ratio; docs/performance.md reports the runtime against the passthrough)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.bench.replay",
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
        return {"skipped": "no JSON from jobs.bench.replay"}
    return {
        r["name"]: (
            {"skipped": r["skipped"]} if r.get("skipped") else {"events_per_s": round(r["events_per_second"], 1)}
        )
        for r in data.get("results", [])
    }


def main(argv: list[str] | None = None) -> int:
    from common.cli import Parser, duration_text, positive_int

    p = Parser(prog="python -m jobs.bench.embedded", description=__doc__.split("\n")[0])
    p.add_argument("--impressions", type=positive_int, default=100_000, help="stream size for the throughput runs")
    p.add_argument("--partitions", type=positive_int, default=4, metavar="N", help="partitions of each topic")
    p.add_argument("--rate", type=float, default=50.0, help="impressions per second of event time")
    p.add_argument("--window", type=duration_text, metavar="DURATION", default="1m", help="the join's window W")
    p.add_argument("--horizon", type=duration_text, metavar="DURATION", default="10m", help="the join's horizon H")
    p.add_argument(
        "--checkpoint-interval", type=duration_text, metavar="DURATION", default="1s",
        help="Redis checkpoints in the throughput runs (some fall inside a run)",
    )
    p.add_argument("--seed", type=int, default=1, help="the generator's seed")
    p.add_argument(
        "--freshness-impressions", type=positive_int, default=20_000, metavar="N",
        help="stream size of the freshness run",
    )
    p.add_argument("--speedup", type=float, default=20.0, help="event-time ms per wall ms in the freshness run")
    p.add_argument(
        "--repeat", type=positive_int, default=3, metavar="N",
        help="runs of each contender (alternating); the best counts",
    )
    p.add_argument("--skip-freshness", action="store_true", help="do not run the freshness measurement")
    p.add_argument("--skip-peer", action="store_true", help="do not run the Flink SQL peer / local replay")
    p.add_argument(
        "--runtime-log",
        default=".bench/embedded-freshness-runtime.log",
        metavar="FILE",
        help="the freshness run's runtime log (JSON lines)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON here (default: none)")
    args = p.parse_args(argv)
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
            window_ms=parse_duration_ms(args.window),
            horizon_ms=parse_duration_ms(args.horizon),
            delay_mean_ms=parse_duration_ms(args.window) // 6,
        )
        events_file = tmp / "events.jsonl"
        stats = generate(
            gen, out=str(events_file), kafka=KafkaTarget(bootstrap, topics.impressions, topics.snapshots, topics.labels)
        )
        results["events"] = stats.events
        results["event_mix"] = stats.by_type
        runs: dict[str, list[dict[str, Any]]] = {"passthrough": [], "passthrough_generic": [], "embedded": []}
        for i in range(args.repeat):  # alternate the three, keep the best of each (a shared machine is noisy)
            print(f"bench_embedded: passthrough ({i + 1}/{args.repeat}) ...", file=sys.stderr)
            runs["passthrough"].append(passthrough(bootstrap, topics, stats.events, compiled_recoder))
            print(f"bench_embedded: passthrough, generic codec ({i + 1}/{args.repeat}) ...", file=sys.stderr)
            runs["passthrough_generic"].append(passthrough(bootstrap, topics, stats.events, generic_recoder))
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
        generic = results["passthrough_generic"]["events_per_s"]
        results["ratio_embedded_to_generic_passthrough"] = round(em / generic, 3) if generic and em else None
        if not args.skip_peer:
            print(
                "bench_embedded: Flink SQL interval-join peer and local replay on the same events ...", file=sys.stderr
            )
            results["replay_peers"] = replay_peers(events_file)
        if not args.skip_freshness:
            print("bench_embedded: freshness (live, accelerated clock) ...", file=sys.stderr)
            results["freshness"] = freshness(bootstrap, redis_url, tmp, args.window, args.horizon, args)
    print(report(results, args.impressions, args.partitions, args.repeat))
    if args.json:
        write_atomic(args.json, json.dumps(results, indent=2, sort_keys=True))
    return 0


def report(results: dict[str, Any], impressions: int, partitions: int, repeat: int) -> str:
    """The human summary: each contender's events/s, the ratio and its target, the peers and freshness."""
    pt, em = results["passthrough"], results["embedded"]
    lines = [
        f"events: {results['events']} ({impressions} impressions, {partitions} partitions)",
        f"{'passthrough':<12} {pt['events_per_s']:>12,.0f} events/s  ({pt['seconds']} s; "
        f"{pt['events_per_cpu_s']:,.0f} events per CPU-second)",
        f"{'passthrough, generic codec':<12} {results['passthrough_generic']['events_per_s']:>12,.0f} events/s",
        f"{'embedded':<12} {em['events_per_s']:>12,.0f} events/s  ({em['seconds']} s, {em['checkpoints']} checkpoints; "
        f"{em['events_per_cpu_s']:,.0f} events per CPU-second)",
        f"ratio embedded/passthrough: {results['ratio_embedded_to_passthrough']} by wall time (target >= 0.6), "
        f"{results['cpu_ratio_embedded_to_passthrough']} by CPU time; best of {repeat} each; "
        f"against the generic-codec passthrough {results['ratio_embedded_to_generic_passthrough']} by wall time",
        f"state bytes per pending impression: {em['state_bytes_per_pending_impression']}",
    ]
    peers = results.get("replay_peers") or {}
    for name, r in peers.items():
        if isinstance(r, dict) and r.get("events_per_s"):
            lines.append(
                f"{'replay ' + name:<12} {r['events_per_s']:>12,.0f} events/s  "
                f"(same events, file in; jobs.bench.replay)"
            )
    fr = results.get("freshness")
    if fr and fr.get("positives_seen"):
        lines.append(
            f"freshness label -> POSITIVE sample: p50 {fr['p50_s']} s, p99 {fr['p99_s']} s, max {fr['max_s']} s "
            f"over {fr['positives_seen']} positives (target p99 < 1 s)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
