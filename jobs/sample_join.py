"""``python -m jobs.sample_join``: the sample join's command line (docs/cli.md).

    replay --events EVENTS.jsonl --out SAMPLES.jsonl [--unmatched U.jsonl] [--deadletter BAD.jsonl]
           [--task click ...] [--window 10m] [--horizon 24h] [--snapshot-wait 30s]
           [--out-of-orderness 5s] [--config CONFIG.yaml] [--engine local|flink] [--json]
    run --config CONFIG.yaml [--engine local|flink] [--bootstrap-servers …] [--redis-url …]
        [--group-id …] [--task …] [--window …] [--horizon …] [topic names …]
        [--on-missing-checkpoint fail|earliest|committed] [--start-wait DURATION]

Engines are imported lazily: a missing engine gives a one-line error, not a traceback.
The conventions (common.cli): exit status 0 done; 1 the run failed; 2 bad arguments, bad config or
unreadable input.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.cli import (
    EXIT_FAILED,
    EXIT_USAGE,
    Parser,
    UsageError,
    command_prog,
    config_default,
    deprecated_alias,
    duration,
    fail,
    port,
    positive_int,
)
from common.config import format_duration_ms, validate_config
from common.errors import CommonError, ConfigError
from common.task_contract import TaskContractError
from jobs.config import (
    CheckpointConfig,
    FlinkConfig,
    JoinConfig,
    KafkaConfig,
    LocalRuntimeConfig,
    MetricsConfig,
    RedisConfig,
    SampleJoinConfig,
    TaskConfig,
    TopicsConfig,
)
from jobs.errors import JobError

PROG = "python -m jobs.sample_join"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Streaming sample join: impressions + feature snapshots + labels. Flags override the config "
        "file; the defaults shown are the config's own.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{replay,run}", required=True)

    rp = sub.add_parser(
        "replay",
        help="join an events file (JSON lines) into samples, offline",
        description="Join an events file (JSON lines, docs/wire-format.md) into samples. Output files appear only "
        "when complete. A summary goes to stderr.",
    )
    rp.add_argument("--events", required=True, type=Path, metavar="EVENTS.jsonl", help="input events")
    rp.add_argument("--out", required=True, type=Path, metavar="SAMPLES.jsonl", help="samples of all tasks")
    rp.add_argument(
        "--unmatched", type=Path, metavar="UNMATCHED.jsonl", help="unmatched labels (default: OUT.unmatched.jsonl)"
    )
    rp.add_argument(
        "--deadletter", type=Path, metavar="BAD.jsonl", help="bad input lines (default: OUT.deadletter.jsonl)"
    )
    _join_flags(rp)
    rp.add_argument(
        "--config", type=Path, metavar="CONFIG.yaml",
        help="take tasks etc. from a sample-join config (default: none: the built-in defaults)",
    )
    rp.add_argument("--engine", choices=("local", "flink"), default="local", help="which engine joins")
    rp.add_argument(
        "--parallelism",
        type=positive_int,
        metavar="N",
        help="flink engine parallelism: $SAMPLE_JOIN_FLINK_PARALLELISM, else the config's "
        + config_default(FlinkConfig, "parallelism"),
    )
    json_flag = rp.add_argument("--json", action="store_true", help="also print the summary as JSON on stdout")
    deprecated_alias(rp, json_flag, "--json-summary")
    rp.add_argument("--quiet", action="store_true", help="no human summary on stderr")

    rn = sub.add_parser(
        "run",
        help="run the streaming job on Kafka",
        description="Run the streaming sample join: Kafka in, Kafka out (local: embedded runtime with Redis "
        "state; flink: the PyFlink job). Flags override the config file.",
    )
    rn.add_argument(
        "--config", type=Path, metavar="CONFIG.yaml",
        help="sample-join config (YAML) (default: none: the built-in defaults)",
    )
    rn.add_argument("--engine", choices=("local", "flink"), default="local", help="which engine runs the job")
    rn.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT[,…]",
        help=f"Kafka brokers {config_default(KafkaConfig, 'bootstrap_servers')}",
    )
    rn.add_argument(
        "--redis-url", metavar="redis://HOST:PORT/DB",
        help="the state's Redis; no credentials here (a command line is visible to every user): set redis.password "
        f"in the config file, e.g. from the environment {config_default(RedisConfig, 'url')}",
    )
    rn.add_argument("--group-id", help=f"Kafka consumer group {config_default(KafkaConfig, 'group_id')}")
    _join_flags(rn)
    topics = rn.add_argument_group("topics")
    topics.add_argument(
        "--impressions-topic", metavar="TOPIC", help=config_default(TopicsConfig, "impressions")
    )
    snapshots = topics.add_argument(
        "--feature-snapshots-topic", dest="snapshots_topic", metavar="TOPIC",
        help=config_default(TopicsConfig, "feature_snapshots"),
    )
    deprecated_alias(topics, snapshots, "--snapshots-topic")
    topics.add_argument("--labels-topic", metavar="TOPIC", help=config_default(TopicsConfig, "labels"))
    topics.add_argument(
        "--samples-prefix", metavar="PREFIX",
        help=f"samples go to PREFIX<task> {config_default(TopicsConfig, 'samples_prefix')}",
    )
    topics.add_argument("--unmatched-topic", metavar="TOPIC", help=config_default(TopicsConfig, "unmatched"))
    topics.add_argument("--deadletter-topic", metavar="TOPIC", help=config_default(TopicsConfig, "deadletter"))
    rn.add_argument(
        "--parallelism", type=positive_int, metavar="N",
        help=f"flink parallelism {config_default(FlinkConfig, 'parallelism')}",
    )
    rn.add_argument(
        "--metrics-port", type=port, metavar="PORT",
        help="Prometheus /metrics port; 0: any free port (the start log line names it) "
        f"{config_default(MetricsConfig, 'port', none='none: no endpoint')}",
    )
    rn.add_argument(
        "--exit-when-idle",
        type=duration,
        metavar="DURATION",
        help="bounded mode: read up to the end offsets at start (local: then idle this long), resolve "
        f"everything and exit {config_default(LocalRuntimeConfig, 'exit_when_idle', none='none: run until stopped')}",
    )
    rn.add_argument(
        "--on-missing-checkpoint",
        choices=("fail", "earliest", "committed"),
        help="local: what a partition whose checkpoint is gone from Redis while the consumer group has committed "
        "offsets does (docs/guarantees.md): fail exits 1 naming the group and partitions; earliest "
        "re-reads every retained event (state rebuilt, samples emitted again); committed resumes at the "
        f"committed offsets (the pending impressions' state is lost) {config_default(CheckpointConfig, 'on_missing')}",
    )
    rn.add_argument(
        "--start-wait",
        type=duration,
        metavar="DURATION",
        help="local: how long the start waits for Redis and Kafka before it gives up "
        f"{config_default(LocalRuntimeConfig, 'start_wait')}",
    )
    return parser


def _join_flags(p: argparse.ArgumentParser) -> None:
    tasks = ", ".join(t.name for t in JoinConfig().tasks)
    p.add_argument(
        "--task",
        action="append",
        metavar="NAME",
        help=f"task name = label type (repeatable) (default: the config's tasks, else {tasks})",
    )
    p.add_argument(
        "--window", type=duration, metavar="DURATION", help=f"negative window W {config_default(TaskConfig, 'window')}"
    )
    p.add_argument(
        "--horizon", type=duration, metavar="DURATION",
        help=f"attribution horizon H {config_default(TaskConfig, 'horizon')}",
    )
    p.add_argument(
        "--snapshot-wait", type=duration, metavar="DURATION",
        help=f"snapshot wait S, at most W {config_default(TaskConfig, 'snapshot_wait')}",
    )
    p.add_argument(
        "--out-of-orderness", type=duration, metavar="DURATION",
        help=f"allowed disorder {config_default(JoinConfig, 'out_of_orderness')}",
    )


# -- config assembly ---------------------------------------------------------------------------
def _join_from_args(args: argparse.Namespace, base: JoinConfig) -> JoinConfig:
    """Apply --task/--window/--horizon/--snapshot-wait/--out-of-orderness to ``base``."""
    data: dict[str, Any] = base.model_dump()
    tasks: list[dict[str, Any]] = data["tasks"]
    if args.task:
        by_name = {t["name"]: t for t in tasks}
        names = list(dict.fromkeys(args.task))
        tasks = [dict(by_name[n]) if n in by_name else {"name": n} for n in names]
    for t in tasks:
        if args.window is not None:
            t["window"] = args.window
        if args.horizon is not None:
            t["horizon"] = args.horizon
        if args.snapshot_wait is not None:
            t["snapshot_wait"] = args.snapshot_wait
        elif t.get("snapshot_wait", 0) > t.get("window", 1):
            t["snapshot_wait"] = t["window"]  # a short --window shortens the default snapshot wait
    data["tasks"] = tasks
    if args.out_of_orderness is not None:
        data["out_of_orderness"] = args.out_of_orderness
    return validate_config(data, JoinConfig, source="<arguments>")


def load_config(path: Path | None) -> SampleJoinConfig:
    return SampleJoinConfig.load(path)


def run_config_from_args(args: argparse.Namespace) -> SampleJoinConfig:
    overrides = {
        "kafka.bootstrap_servers": args.bootstrap_servers,
        "kafka.group_id": args.group_id,
        "kafka.topics.impressions": args.impressions_topic,
        "kafka.topics.feature_snapshots": args.snapshots_topic,
        "kafka.topics.labels": args.labels_topic,
        "kafka.topics.samples_prefix": args.samples_prefix,
        "kafka.topics.unmatched": args.unmatched_topic,
        "kafka.topics.deadletter": args.deadletter_topic,
        "redis.url": args.redis_url,
        "flink.parallelism": args.parallelism,
        "metrics.port": args.metrics_port,
        "local.exit_when_idle": args.exit_when_idle,
        "local.start_wait": args.start_wait,
        "checkpoint.on_missing": args.on_missing_checkpoint,
    }
    config = SampleJoinConfig.load(args.config, overrides)
    join = _join_from_args(args, config.join)
    data = config.model_dump()
    data["join"] = join.model_dump()
    return validate_config(data, SampleJoinConfig, source=str(args.config or "<arguments>"))


def default_side_output(out: Path, kind: str) -> Path:
    """``samples.jsonl`` -> ``samples.<kind>.jsonl`` beside it."""
    return out.with_name(f"{out.stem if out.suffix else out.name}.{kind}.jsonl")


def _env_parallelism() -> int | None:
    """``SAMPLE_JOIN_FLINK_PARALLELISM`` (tests run the same command at parallelism 1 and 2)."""
    text = os.environ.get("SAMPLE_JOIN_FLINK_PARALLELISM", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"SAMPLE_JOIN_FLINK_PARALLELISM must be a positive integer, got {text!r}")
    return value


# -- engines -------------------------------------------------------------------------------------
def _engine(module: str, engine: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"--engine {engine}: the {engine} engine ({what}) is not available: {exc}") from None


def cmd_replay(args: argparse.Namespace) -> int:
    base = load_config(args.config) if args.config else None
    join = _join_from_args(args, base.join if base else JoinConfig())
    events: Path = args.events
    if not events.is_file():
        what = "does not exist" if not events.exists() else "is not a regular file"
        raise UsageError(f"--events: events file {events} {what}")
    out: Path = args.out
    unmatched = args.unmatched or default_side_output(out, "unmatched")
    deadletter = args.deadletter or default_side_output(out, "deadletter")
    paths = [out.resolve(), unmatched.resolve(), deadletter.resolve()]
    if len(set(paths)) != 3 or events.resolve() in paths:
        raise UsageError("--events, --out, --unmatched and --deadletter must be distinct files")
    for path in (out, unmatched, deadletter):
        if path.is_dir():
            raise UsageError(f"output {path} is a directory")
    parallelism = args.parallelism or _env_parallelism() or (base.flink.parallelism if base else 1)
    if args.engine == "local":
        from jobs.runtime.replay.local import run_replay
    else:
        run_replay = _engine("jobs.runtime.flink.replay", "flink", "PyFlink replay").run_replay
    summary = run_replay(events, out, unmatched, deadletter, join, parallelism)
    if not args.quiet:
        tasks = ", ".join(
            f"{t.name}(label {t.label_type}, W {format_duration_ms(t.window)}, H {format_duration_ms(t.horizon)}, "
            f"S {format_duration_ms(t.snapshot_wait)})"
            for t in join.tasks
        )
        print(summary.format_human(), file=sys.stderr)
        print(f"  tasks: {tasks}; out-of-orderness {format_duration_ms(join.out_of_orderness)}", file=sys.stderr)
        print(f"  wrote {out}, {unmatched}, {deadletter}", file=sys.stderr)
    if args.json:
        import json

        print(json.dumps(summary.to_json(), sort_keys=True))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = run_config_from_args(args)
    if args.engine == "local":
        module = _engine("jobs.runtime.embedded.runtime", "local", "embedded Kafka + Redis runtime")
    else:
        module = _engine("jobs.runtime.flink.job", "flink", "PyFlink streaming job")
    result = module.run(config)
    return int(result) if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = command_prog(args, PROG)
    try:
        if args.command == "replay":
            return cmd_replay(args)
        return cmd_run(args)
    except (UsageError, ConfigError, TaskContractError) as exc:
        return fail(prog, exc, EXIT_USAGE)
    except CommonError as exc:  # a service unreachable or unfit, a topic that cannot be made
        return fail(prog, exc, EXIT_FAILED)
    except JobError as exc:
        from jobs.runtime.replay.local import InputError

        return fail(prog, exc, EXIT_USAGE if isinstance(exc, InputError) else EXIT_FAILED)
    except OSError as exc:  # e.g. an output directory that cannot be created or written
        return fail(prog, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_FAILED)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
