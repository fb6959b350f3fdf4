"""``python -m jobs.sample_join``: the sample join's command line (docs/cli.md).

    replay --events EVENTS.jsonl --out SAMPLES.jsonl [--unmatched U.jsonl] [--deadletter BAD.jsonl]
           [--task click ...] [--window 10m] [--horizon 24h] [--snapshot-wait 30s]
           [--out-of-orderness 5s] [--config CONFIG.yaml] [--engine local|flink] [--json-summary]
    run --config CONFIG.yaml [--engine local|flink] [--bootstrap-servers …] [--redis-url …]
        [--group-id …] [--task …] [--window …] [--horizon …] [topic names …]
        [--on-missing-checkpoint fail|earliest|committed] [--start-wait DURATION]

Engines are imported lazily: a missing engine gives a one-line error, not a traceback.
Exit status: 0 done; 1 the run failed; 2 bad arguments, bad config or unreadable input.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from common.config import format_duration_ms, parse_duration_ms, validate_config
from common.errors import CommonError
from common.services import START_WAIT_S
from jobs.config import JoinConfig, SampleJoinConfig
from jobs.errors import JobError

PROG = "python -m jobs.sample_join"


class UsageError(Exception):
    """Bad arguments; printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        raise UsageError(f"{self.prog}: error: {message} (see --help)")


def _duration(text: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Streaming sample join: impressions + feature snapshots + labels.")
    sub = parser.add_subparsers(dest="command", metavar="{replay,run}", parser_class=_Parser)
    sub.required = True

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
    rp.add_argument("--config", type=Path, metavar="CONFIG.yaml", help="take tasks etc. from a sample-join config")
    rp.add_argument("--engine", choices=("local", "flink"), default="local", help="default: local")
    rp.add_argument(
        "--parallelism",
        type=_positive_int,
        help="flink engine parallelism (default: $SAMPLE_JOIN_FLINK_PARALLELISM, the config's, or 1)",
    )
    rp.add_argument("--json-summary", action="store_true", help="also print the summary as JSON on stdout")
    rp.add_argument("--quiet", action="store_true", help="no human summary on stderr")

    rn = sub.add_parser(
        "run",
        help="run the streaming job on Kafka",
        description="Run the streaming sample join: Kafka in, Kafka out (local: embedded runtime with Redis "
        "state; flink: the PyFlink job). Flags override the config file.",
    )
    rn.add_argument("--config", type=Path, metavar="CONFIG.yaml", help="sample-join config (YAML)")
    rn.add_argument("--engine", choices=("local", "flink"), default="local", help="default: local")
    rn.add_argument("--bootstrap-servers", metavar="HOST:PORT[,…]")
    rn.add_argument("--redis-url", metavar="redis://HOST:PORT/DB",
                    help="no credentials here (a command line is visible to every user): set redis.password "
                         "in the config file, e.g. from the environment")
    rn.add_argument("--group-id")
    _join_flags(rn)
    rn.add_argument("--impressions-topic")
    rn.add_argument("--snapshots-topic", "--feature-snapshots-topic", dest="snapshots_topic")
    rn.add_argument("--labels-topic")
    rn.add_argument("--samples-prefix", metavar="PREFIX", help="samples go to PREFIX<task> (default samples.)")
    rn.add_argument("--unmatched-topic")
    rn.add_argument("--deadletter-topic")
    rn.add_argument("--parallelism", type=_positive_int, help="flink parallelism")
    rn.add_argument("--metrics-port", type=int, help="Prometheus port (0: any free port)")
    rn.add_argument(
        "--exit-when-idle",
        type=_duration,
        metavar="DURATION",
        help="bounded mode: read up to the end offsets at start (local: then idle this long), resolve "
        "everything and exit",
    )
    rn.add_argument(
        "--on-missing-checkpoint",
        choices=("fail", "earliest", "committed"),
        help="local: what a partition whose checkpoint is gone from Redis while the consumer group has committed "
        "offsets does (docs/guarantees.md): fail (default) exits 1 naming the group and partitions; earliest "
        "re-reads every retained event (state rebuilt, samples emitted again); committed resumes at the "
        "committed offsets (the pending impressions' state is lost)",
    )
    rn.add_argument(
        "--start-wait",
        type=_duration,
        metavar="DURATION",
        help=f"local: how long the start waits for Redis and Kafka before it gives up (default {START_WAIT_S:g}s)",
    )
    return parser


def _join_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task",
        action="append",
        metavar="NAME",
        help="task name = label type (repeatable; default: the config's tasks, or click)",
    )
    p.add_argument("--window", type=_duration, metavar="DURATION", help="negative window W (default 10m)")
    p.add_argument("--horizon", type=_duration, metavar="DURATION", help="attribution horizon H (default 24h)")
    p.add_argument("--snapshot-wait", type=_duration, metavar="DURATION", help="snapshot wait S (default 30s)")
    p.add_argument("--out-of-orderness", type=_duration, metavar="DURATION", help="allowed disorder (default 5s)")


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
        raise UsageError(f"{PROG}: error: SAMPLE_JOIN_FLINK_PARALLELISM must be a positive integer, got {text!r}")
    return value


# -- engines -------------------------------------------------------------------------------------
def _engine(module: str, engine: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"{PROG}: error: the {engine} engine ({what}) is not available: {exc}") from None


def cmd_replay(args: argparse.Namespace) -> int:
    base = load_config(args.config) if args.config else None
    join = _join_from_args(args, base.join if base else JoinConfig())
    events: Path = args.events
    if not events.is_file():
        what = "does not exist" if not events.exists() else "is not a regular file"
        raise UsageError(f"{PROG}: error: events file {events} {what}")
    out: Path = args.out
    unmatched = args.unmatched or default_side_output(out, "unmatched")
    deadletter = args.deadletter or default_side_output(out, "deadletter")
    paths = [out.resolve(), unmatched.resolve(), deadletter.resolve()]
    if len(set(paths)) != 3 or events.resolve() in paths:
        raise UsageError(f"{PROG}: error: --events, --out, --unmatched and --deadletter must be distinct files")
    for path in (out, unmatched, deadletter):
        if path.is_dir():
            raise UsageError(f"{PROG}: error: output {path} is a directory")
    parallelism = args.parallelism or _env_parallelism() or (base.flink.parallelism if base else 1)
    if args.engine == "local":
        from jobs.runtime.replay import run_replay
    else:
        run_replay = _engine("jobs.runtime.flink_replay", "flink", "PyFlink replay").run_replay
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
    if args.json_summary:
        import json

        print(json.dumps(summary.to_json(), sort_keys=True))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = run_config_from_args(args)
    if args.engine == "local":
        module = _engine("jobs.runtime.embedded", "local", "embedded Kafka + Redis runtime")
    else:
        module = _engine("jobs.runtime.flink_job", "flink", "PyFlink streaming job")
    result = module.run(config)
    return int(result) if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "replay":
            return cmd_replay(args)
        return cmd_run(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except CommonError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except JobError as exc:
        from jobs.runtime.replay import InputError

        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InputError) else 1
    except OSError as exc:  # e.g. an output directory that cannot be created or written
        print(f"{PROG}: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
