"""Synthetic delayed-feedback event generator: ``python -m jobs.generate``.

Writes impressions, feature snapshots and labels (docs/wire-format.md JSON forms) in **arrival order** to a
JSONL file (``--out``) and/or to Kafka (``--bootstrap-servers``: Avro single-object encoding via the
``schemas`` codec, keyed by ``request_id``, topics of docs/wire-format.md), plus a ground-truth file
(``--truth``) with one JSON line per distinct impression.

The click model is known: a logistic model in user and item latent factors, user/item biases and a
few sparse (``city``, ``device``, ``u_seg``, ``page``) and dense (``u_ctr_7d``, ``u_activity``)
features that carry real signal, with a position bias. The intercept is calibrated so that the mean
click probability equals ``--ctr``.

Timing, relative to the join's negative window W (``--window``) and attribution horizon H
(``--horizon``): of the clicked impressions, ``--late-fraction`` click after W (log-uniform in
(W, H]) and ``--beyond-horizon-fraction`` after H; the rest click within W (exponential with mean
``--delay-mean``, truncated to W). Feature snapshots arrive a little after their request (some are
missing), a fraction of impressions and labels are duplicated, some labels are orphans (no
impression), and some labels are of other types (``conversion`` after a click, ``like``).

Bounded disorder: every event's arrival time is its event time plus a uniform jitter in
``[0, --disorder]``, and events are written sorted by arrival time, so no event is older than the
largest event time written before it by more than ``--disorder`` (keep it within the join's
``out_of_orderness``).

Request and impression ids carry the run's id (``--run-id``; by default a fresh random one, shown in
the summary), so that two runs into the same topics are two distinct streams: sharing an impression
id, the join would give one run's impression the other's labels. User and item ids (the model's
features) are shared by all runs. Everything is a deterministic function of ``--run-id``, ``--seed``
and the other flags. A second run into topics a running join has read also needs a later ``--start``
(e.g. ``now``): events behind the join's watermark find their windows closed. In Kafka mode
``--speedup X`` paces the writes so that X ms of event time pass per ms of wall time (600: ten
minutes of event time per second); 0 (the default) writes as fast as possible.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.cli import (
    EXIT_FAILED,
    EXIT_USAGE,
    Parser,
    default_of,
    deprecated_alias,
    duration,
    fail,
    non_negative_int,
    positive_int,
)
from common.config import format_duration_ms
from common.errors import CommonError, ConfigError
from common.output import AtomicFile
from common.wire import WIRE_FORMATS, WireFormatConfig
from jobs.config import SampleJoinConfig, TopicsConfig
from jobs.synthetic import GenerateError, Generator, GeneratorConfig, Stats

__all__ = ["GenerateError", "Generator", "GeneratorConfig", "KafkaSink", "KafkaTarget", "Stats", "main", "run"]

PROG = "python -m jobs.generate"


# -- sinks --------------------------------------------------------------------------------------------


def _output(path: str) -> AtomicFile:
    """An output file that appears only when the run completes (a one-line error if it cannot be made)."""
    try:
        return AtomicFile(path)
    except OSError as exc:
        raise GenerateError(f"cannot write {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class KafkaTarget:
    bootstrap_servers: str
    impressions: str = "events.impressions"
    feature_snapshots: str = "events.feature_snapshots"
    labels: str = "events.labels"
    create_partitions: int | None = None  # create missing topics with this many partitions
    extra: dict[str, Any] = field(default_factory=dict)
    wire: WireFormatConfig = field(default_factory=WireFormatConfig)  # single_object, or confluent + registry


class KafkaSink:
    """Avro events keyed by request_id, to the three event topics: single-object encoded, or in the
    Confluent framing (their schemas registered under each topic's subject at start)."""

    def __init__(self, target: KafkaTarget):
        from confluent_kafka import Producer

        from jobs.runtime.kafka_io import ensure_topics, event_json_to_wire

        self.topics = {
            "impression": target.impressions,
            "feature_snapshot": target.feature_snapshots,
            "label": target.labels,
        }
        single_object = target.wire.format == "single_object"
        self._encode = event_json_to_wire if single_object else _confluent(target.wire, self.topics)
        if target.create_partitions:
            ensure_topics(target.bootstrap_servers, list(self.topics.values()), target.create_partitions)
        conf = {
            "bootstrap.servers": target.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",  # the Java clients' partitioner: co-partitioned with them too
            "queue.buffering.max.messages": 500_000,
            "error_cb": self._on_error,
            **target.extra,
        }
        self._errors: list[str] = []
        self._producer = Producer(conf)
        self._failed = 0

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._errors.append(str(err))

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failed += 1
            self._errors.append(str(err))

    def write(self, event: dict[str, Any]) -> None:
        value = self._encode(event)
        topic = self.topics[event["type"]]
        key = event["request_id"].encode()
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._delivered)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)
        if self._errors:
            raise GenerateError(f"Kafka producer failed: {self._errors[0]}")

    def close(self) -> None:
        remaining = self._producer.flush(60)
        if remaining or self._errors or self._failed:
            raise GenerateError(
                f"Kafka producer failed: {remaining} undelivered, {self._failed} failed"
                + (f" ({self._errors[0]})" if self._errors else "")
            )


def _confluent(wire: WireFormatConfig, topics: dict[str, str]) -> Callable[[dict[str, Any]], bytes]:
    """The events' encoder in the Confluent framing (registering their schemas); GenerateError if the
    registry cannot be used."""
    from jobs.errors import JobError
    from jobs.runtime.kafka_io import WireFormat
    from schemas.confluent import ConfluentCodec
    from schemas.errors import SchemaError

    try:
        confluent = wire.codec()
        assert isinstance(confluent, ConfluentCodec)
        return WireFormat(confluent, events=topics).encode_event_json
    except (JobError, SchemaError) as exc:
        raise GenerateError(str(exc)) from exc


def run(
    cfg: GeneratorConfig,
    out: str | None = None,
    truth: str | None = None,
    kafka: KafkaTarget | None = None,
    speedup: float = 0.0,
    progress: Callable[[str], None] | None = None,
    progress_every_s: float = 5.0,
) -> Stats:
    """Generate ``cfg``'s stream into the given sinks; returns the stream's statistics."""
    if out is None and kafka is None:
        raise GenerateError("give --out FILE and/or --bootstrap-servers HOST:PORT")
    files: list[AtomicFile] = []
    sink: KafkaSink | None = None
    try:
        out_file = _output(out) if out else None
        if out_file:
            files.append(out_file)
        truth_file = _output(truth) if truth else None
        if truth_file:
            files.append(truth_file)
        on_truth = None
        if truth_file is not None:
            write_truth = truth_file.write

            def on_truth(row: dict[str, Any]) -> None:
                write_truth((json.dumps(row, separators=(",", ":")) + "\n").encode())

        gen = Generator(cfg, on_truth)
        sink = KafkaSink(kafka) if kafka is not None else None
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        out_write = out_file.write if out_file else None
        wall0 = time.monotonic()
        last_report = wall0
        first_arrival: int | None = None
        for arrival, event in gen.events():
            if out_write is not None:
                out_write((dumps(event) + "\n").encode())
            if sink is not None:
                if speedup > 0:
                    if first_arrival is None:
                        first_arrival = arrival
                    due = wall0 + (arrival - first_arrival) / 1000.0 / speedup
                    delay = due - time.monotonic()
                    if delay > 0.002:
                        time.sleep(delay)
                sink.write(event)
            if progress is not None and gen.stats.events % 4096 == 0:
                now = time.monotonic()
                if now - last_report >= progress_every_s:
                    last_report = now
                    s = gen.stats
                    progress(
                        f"generate: {s.impressions}/{cfg.impressions} impressions, {s.events} events, "
                        f"{s.events / (now - wall0):.0f} events/s"
                    )
        if sink is not None:
            sink.close()
            sink = None
        for f in files:
            f.commit()
        files.clear()
        return gen.stats
    finally:
        for f in files:
            f.discard()


def _start_ms(text: str) -> int:
    """``--start``: ms since the epoch, or ``now`` (the wall clock at parse time)."""
    if text == "now":
        return int(time.time() * 1000)
    try:
        return non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected ms since the epoch or 'now', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=PROG,
        description="Generate delayed-feedback events (impressions, feature snapshots, labels) with ground truth.",
    )
    d = GeneratorConfig()

    def shown(name: str) -> str:
        """The library's default of a duration field, as text the duration type parses."""
        return format_duration_ms(getattr(d, name))

    out = p.add_argument_group("outputs")
    out.add_argument("--out", metavar="EVENTS.jsonl", help="JSONL file of events in arrival order (default: none)")
    out.add_argument(
        "--truth", metavar="TRUTH.jsonl", help="JSONL ground truth, one line per distinct impression (default: none)"
    )
    out.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT[,…]", help="write Avro events to this Kafka cluster (default: none)"
    )
    out.add_argument(
        "--config",
        metavar="CONFIG.yaml",
        help="write to the Kafka cluster of this sample-join config (its brokers, security with the secrets from "
        "the file or its environment, topics and wire format); the flags override it (default: none)",
    )
    for kind, key in (("impressions", "impressions"), ("feature-snapshots", "feature_snapshots"), ("labels", "labels")):
        topic = out.add_argument(
            f"--{kind}-topic", metavar="TOPIC", default=default_of(TopicsConfig, key)[0], help="Kafka mode"
        )
        deprecated_alias(out, topic, f"--topic-{kind}")
    out.add_argument(
        "--wire-format", choices=WIRE_FORMATS, default=default_of(WireFormatConfig, "format")[0],
        help="Kafka mode: confluent writes the Confluent Schema Registry framing (needs --schema-registry-url; "
        "basic auth from $SCHEMA_REGISTRY_BASIC_AUTH)",
    )
    out.add_argument(
        "--schema-registry-url", metavar="URL", help="the registry of --wire-format confluent (default: none)"
    )
    out.add_argument(
        "--create-topics", type=positive_int, metavar="PARTITIONS",
        help="create missing event topics with this many partitions (default: none: they must exist)",
    )
    out.add_argument(
        "--speedup",
        type=float,
        default=0.0,
        help="Kafka mode: event-time ms per wall ms (600 = 10 min/s); 0 = no pacing",
    )
    out.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    json_flag = out.add_argument("--json", action="store_true", help="print the stream's statistics as JSON on stdout")
    deprecated_alias(out, json_flag, "--summary")
    m = p.add_argument_group("stream")
    m.add_argument("--impressions", type=non_negative_int, default=d.impressions, help="impressions to generate")
    m.add_argument("--users", type=positive_int, default=d.users, help="distinct users")
    m.add_argument("--items", type=positive_int, default=d.items, help="distinct items")
    m.add_argument("--ctr", type=float, default=d.ctr, help="mean click probability")
    m.add_argument("--rate", type=float, default=d.rate, help="impressions per second of event time")
    m.add_argument("--slate", type=positive_int, default=d.slate, help="at most this many impressions per request")
    m.add_argument(
        "--window", type=duration, metavar="DURATION", default=shown("window_ms"),
        help="the join's negative window W (places delays)",
    )
    m.add_argument(
        "--horizon", type=duration, metavar="DURATION", default=shown("horizon_ms"),
        help="the join's attribution horizon H (places delays)",
    )
    m.add_argument(
        "--delay-mean", type=duration, metavar="DURATION", default=shown("delay_mean_ms"),
        help="mean click delay within the window (exponential)",
    )
    m.add_argument(
        "--late-fraction", type=float, default=d.late_fraction, help="fraction of clicks with W < delay <= H"
    )
    m.add_argument(
        "--beyond-horizon-fraction",
        type=float,
        default=d.beyond_horizon_fraction,
        help="fraction of clicks with delay > H",
    )
    m.add_argument(
        "--snapshot-max-delay", type=duration, metavar="DURATION", default=shown("snapshot_max_delay_ms"),
        help="feature snapshots lag their request by up to this",
    )
    m.add_argument(
        "--snapshot-missing", type=float, default=d.snapshot_missing, help="fraction of requests without a snapshot"
    )
    m.add_argument(
        "--duplicate-rate",
        type=float,
        default=d.duplicate_rate,
        help="fraction of impressions and of clicks sent twice",
    )
    m.add_argument(
        "--orphan-rate", type=float, default=d.orphan_rate, help="orphan click labels (no impression) per impression"
    )
    m.add_argument(
        "--conversion-rate",
        type=float,
        default=d.conversion_rate,
        help="fraction of clicks followed by a 'conversion' label",
    )
    m.add_argument("--like-rate", type=float, default=d.like_rate, help="'like' labels per impression")
    m.add_argument(
        "--disorder", type=duration, metavar="DURATION", default=shown("disorder_ms"),
        help="bound on out-of-orderness (keep <= the join's)",
    )
    m.add_argument(
        "--start", type=_start_ms, metavar="MS|now", default=str(d.start_ms),
        help="first event time (ms since the epoch, or 'now')",
    )
    m.add_argument("--seed", type=int, default=d.seed, help="random seed")
    m.add_argument(
        "--run-id",
        metavar="ID",
        help="prefix of request and impression ids (up to 32 letters, digits, '_', '-'; '' for none): two runs "
        "into the same topics must differ; give it to reproduce a run's output (default: 8 random hex digits, "
        "shown in the summary)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> GeneratorConfig:
    cfg = GeneratorConfig(
        impressions=args.impressions,
        users=args.users,
        items=args.items,
        ctr=args.ctr,
        rate=args.rate,
        slate=args.slate,
        window_ms=args.window,
        horizon_ms=args.horizon,
        delay_mean_ms=args.delay_mean,
        late_fraction=args.late_fraction,
        beyond_horizon_fraction=args.beyond_horizon_fraction,
        snapshot_max_delay_ms=args.snapshot_max_delay,
        snapshot_missing=args.snapshot_missing,
        duplicate_rate=args.duplicate_rate,
        orphan_rate=args.orphan_rate,
        conversion_rate=args.conversion_rate,
        like_rate=args.like_rate,
        disorder_ms=args.disorder,
        start_ms=args.start,
        seed=args.seed,
        run_id=secrets.token_hex(4) if args.run_id is None else args.run_id,
    )
    cfg.validate()
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        to_kafka = bool(args.bootstrap_servers or args.config)
        if not args.out and not to_kafka:
            raise GenerateError("give --out FILE and/or --bootstrap-servers HOST:PORT (or --config)")
        if args.speedup and not to_kafka:
            raise GenerateError("--speedup paces Kafka writes; give --bootstrap-servers or --config")
        kafka = kafka_target(args) if to_kafka else None
    except (GenerateError, ConfigError) as exc:  # the flags' values do not make a stream
        return fail(PROG, exc, EXIT_USAGE)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        stats = run(
            cfg,
            out=args.out,
            truth=args.truth,
            kafka=kafka,
            speedup=args.speedup,
            progress=None if args.quiet else progress,
        )
    except (GenerateError, CommonError, OSError) as exc:  # Kafka refused the events, an output failed
        return fail(PROG, exc, EXIT_FAILED)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    summary = json.dumps({"run_id": cfg.run_id, **stats.to_json()}, sort_keys=True)
    if args.json:
        print(summary)
    elif not args.quiet:
        print(f"generate: {summary}", file=sys.stderr)
    return 0


def kafka_target(args: argparse.Namespace) -> KafkaTarget:
    """Where Kafka mode writes: the flags, over the join config's kafka section when ``--config`` names one
    (its security settings, secrets included, go to the producer; a topic flag left at its default takes
    the config's topic)."""
    wire = WireFormatConfig.from_flags(args.wire_format, args.schema_registry_url)
    if args.config is None:
        return KafkaTarget(
            bootstrap_servers=args.bootstrap_servers,
            impressions=args.impressions_topic,
            feature_snapshots=args.feature_snapshots_topic,
            labels=args.labels_topic,
            create_partitions=args.create_topics,
            wire=wire,
        )
    kafka = SampleJoinConfig.load(args.config, {"kafka.bootstrap_servers": args.bootstrap_servers}).kafka
    defaults = TopicsConfig()

    def topic(key: str, flag: str) -> str:
        return flag if flag != getattr(defaults, key) else str(getattr(kafka.topics, key))

    settings = kafka.client_settings("producer")
    return KafkaTarget(
        bootstrap_servers=settings.pop("bootstrap.servers"),
        impressions=topic("impressions", args.impressions_topic),
        feature_snapshots=topic("feature_snapshots", args.feature_snapshots_topic),
        labels=topic("labels", args.labels_topic),
        create_partitions=args.create_topics,
        extra=settings,
        wire=wire if args.wire_format != "single_object" or args.schema_registry_url else kafka.wire,
    )


if __name__ == "__main__":
    sys.exit(main())
