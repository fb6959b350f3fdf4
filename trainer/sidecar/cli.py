"""The sidecar's commands: ``run`` (the streaming trainer), ``versions``, ``rollback`` and
``registry rebuild`` (the registry restored from the version directories on disk).

Their flags follow the project's conventions (common.cli): the defaults shown come from the config
models, durations need a unit, ``--metrics-port 0`` is any free port."""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import signal
import sys
import threading
from typing import Any

from common.cli import config_default, default_of, duration, format_default, port
from trainer.config import LOSS_NAMES, KafkaConfig, LossConfig, RedisConfig, SidecarConfig, TrainerConfig
from trainer.sidecar.errors import SidecarError, UsageError

# --distill-weight when --distill-from is given and the config leaves loss.distill_weight at 0.
TEACHER_WEIGHT = 0.5


def add_parsers(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="train continuously from samples.<task> on Kafka, publish checked versions",
        description="Train continuously from samples.<task> on Kafka and publish checked versions. Flags override "
        "the config file; the defaults shown are the config's own.",
    )
    run.add_argument(
        "--config", metavar="CONFIG.yaml",
        help="trainer config file (section sidecar:) (default: none: the built-in defaults)",
    )
    run.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT[,…]",
        help=f"Kafka brokers {config_default(KafkaConfig, 'bootstrap_servers')}",
    )
    run.add_argument(
        "--redis-url", metavar="redis://HOST:PORT/DB",
        help=f"Redis of the model registry {config_default(RedisConfig, 'url')}",
    )
    run.add_argument("--group-id", help=f"Kafka consumer group {config_default(KafkaConfig, 'group_id')}")
    run.add_argument("--task", metavar="NAME", help=f"reads samples.<task> {config_default(SidecarConfig, 'task')}")
    run.add_argument(
        "--model-dir", metavar="DIR",
        help=f"versions, checkpoints and summaries go here {config_default(SidecarConfig, 'model_dir')}",
    )
    add_loss_flags(run)
    run.add_argument(
        "--export-interval", type=duration, metavar="DURATION",
        help=f"a candidate version this often {config_default(SidecarConfig, 'export_interval')}",
    )
    run.add_argument(
        "--warm-start", metavar="PATH",
        help=f"start from this offline export or checkpoint {config_default(SidecarConfig, 'warm_start')}",
    )
    run.add_argument(
        "--metrics-port", type=port, metavar="PORT",
        help="Prometheus /metrics port; 0: any free port (the start log line names it) "
        f"{config_default(SidecarConfig, 'metrics_port', none='none: no endpoint')}",
    )
    run.add_argument(
        "--exit-when-idle",
        type=duration,
        metavar="DURATION",
        help="bounded mode: once every partition is drained and nothing arrived for DURATION, export, "
        f"checkpoint and exit {config_default(SidecarConfig, 'exit_when_idle', none='none: run until stopped')}",
    )
    run.add_argument(
        "--start-wait", type=duration, metavar="DURATION",
        help="how long the start waits for Redis and Kafka before it gives up "
        f"{config_default(SidecarConfig, 'start_wait')}",
    )
    run.add_argument("--quiet", action="store_true", help="warnings and errors only on stderr")

    for name, text in (
        ("versions", "list the model versions of the registry"),
        ("rollback", "move the current pointer back (to the last good version, or --to VERSION)"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _registry_arguments(p)
        if name == "rollback":
            p.add_argument(
                "--to", type=int, metavar="VERSION", help="the version to point at (default: the last good one)"
            )
    registry = sub.add_parser(
        "registry", help="the Redis registry of a model directory", description="The Redis registry of a model "
        "directory: rebuild restores it from the version directories on disk."
    )
    actions = registry.add_subparsers(dest="registry_command", metavar="rebuild", required=True)
    rebuild = "restore the registry (versions and current pointer) from the version directories on disk"
    _registry_arguments(actions.add_parser("rebuild", help=rebuild, description=rebuild))


def add_loss_flags(p: argparse.ArgumentParser) -> None:
    """``--loss``, ``--distill-from`` and ``--distill-weight``, the same in ``fit`` and ``run``."""
    p.add_argument(
        "--loss", choices=LOSS_NAMES, help=f"delayed-feedback correction {config_default(LossConfig, 'name')}"
    )
    p.add_argument(
        "--distill-from", metavar="MODEL_DIR", help="distil toward this export's predictions (default: none)"
    )
    p.add_argument(
        "--distill-weight", type=float, metavar="LAMBDA",
        help=f"weight of the distillation term (default: {TEACHER_WEIGHT:g} with --distill-from, else the config's "
        f"loss.distill_weight: {format_default(*default_of(LossConfig, 'distill_weight'))})",
    )


def _registry_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="CONFIG.yaml",
        help="trainer config file: the Redis url, password, key prefix and model dir (section sidecar:) "
        "(default: none: give --redis-url and --model-dir)",
    )
    p.add_argument(
        "--redis-url", metavar="redis://HOST:PORT/DB",
        help="overrides sidecar.redis.url (needed without --config) (default: the config's)",
    )
    p.add_argument(
        "--model-dir", metavar="DIR",
        help="overrides sidecar.model_dir (needed without --config) (default: the config's)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only on stderr")


def run_config(args: argparse.Namespace) -> TrainerConfig:
    overrides: dict[str, Any] = {
        "sidecar.kafka.bootstrap_servers": args.bootstrap_servers,
        "sidecar.redis.url": args.redis_url,
        "sidecar.kafka.group_id": args.group_id,
        "sidecar.task": args.task,
        "sidecar.model_dir": args.model_dir,
        "loss.name": args.loss,
        "sidecar.export_interval": args.export_interval,
        "sidecar.warm_start": args.warm_start,
        "sidecar.distill_from": args.distill_from,
        "sidecar.metrics_port": args.metrics_port,
        "sidecar.exit_when_idle": args.exit_when_idle,
        "sidecar.start_wait": args.start_wait,
        "loss.distill_weight": args.distill_weight,
    }
    config = TrainerConfig.load(args.config, overrides)
    if config.sidecar.distill_from is not None and config.loss.distill_weight == 0.0:
        loss = config.loss.model_copy(update={"distill_weight": TEACHER_WEIGHT})
        config = config.model_copy(update={"loss": loss})
    return config


def run(args: argparse.Namespace) -> int:
    from trainer.sidecar.metrics import configure_json_logging

    configure_json_logging(args.quiet)
    config = run_config(args)
    import tensorflow as tf

    from trainer.fit import choose_device
    from trainer.sidecar.loop import Sidecar

    sidecar = Sidecar(config)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID`: every thread's stack on stderr
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda _s, _f: sidecar.request_stop())
    try:
        device, description = choose_device()
        with tf.device(device):
            sidecar.open()
            summary = sidecar.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(json.dumps({**summary.to_json(), "device": description}, sort_keys=True))
    return 0


def _registry(args: argparse.Namespace) -> Any:
    """The registry of a model dir, from ``--config`` (the password comes only from there) and the
    flags over it; a few seconds of retries, silent (the error, if any, is one line)."""
    from trainer.sidecar.registry import REGISTRY_FILE, Registry, read_registry_file
    from trainer.sidecar.versions import VersionStore

    if args.config is None and (args.redis_url is None or args.model_dir is None):
        raise UsageError("give --config YAML (the trainer config), or both --redis-url URL and --model-dir DIR")
    overrides = {"sidecar.redis.url": args.redis_url, "sidecar.model_dir": args.model_dir}
    sc = TrainerConfig.load(args.config, overrides).sidecar
    if args.config is not None and not (sc.model_dir / REGISTRY_FILE).is_file():
        if not sc.model_dir.is_dir():
            raise SidecarError(f"model directory {sc.model_dir} does not exist")
        prefix = f"{sc.redis.key_prefix}:{sc.task}"  # what the sidecar of this config uses
    else:
        prefix = read_registry_file(sc.model_dir)
    logging.getLogger("trainer.sidecar").setLevel(logging.ERROR)
    return Registry(sc.redis, prefix, VersionStore(sc.model_dir, sc.keep_versions), retry_for_s=3.0)


def versions(args: argparse.Namespace) -> int:
    registry = _registry(args)
    try:
        current, records = registry.current(), registry.versions()
        unregistered = sorted(set(registry.store.on_disk()) - {int(r["version"]) for r in records})
    finally:
        registry.close()
    if args.json:
        from trainer.sidecar.gate import freshness

        print(json.dumps({"current": current, "freshness": freshness(records, current), "versions": records,
                          "unregistered": unregistered}, sort_keys=True))
        return 0
    print(f"{'':2}{'version':>8}  {'status':<12}{'samples_trained':>16}  {'auc':>7}  {'logloss':>8}  {'bias':>6}  "
          "export")
    for r in records:
        m = r.get("metrics") or {}
        mark = "*" if r["version"] == current else " "
        trained = "-" if r.get("samples_trained") is None else r["samples_trained"]
        print(
            f"{mark:2}{r['version']:>8}  {r['status']:<12}{trained:>16}  "
            f"{_num(m.get('auc'), 7, 4)}  {_num(m.get('logloss'), 8, 4)}  {_num(m.get('prediction_bias'), 6, 3)}  "
            f"{_export(r)}"
        )
    if unregistered:
        print(f"on disk, not in the registry: {_listed(unregistered)} (python -m trainer registry rebuild)")
    return 0


def rollback(args: argparse.Namespace) -> int:
    registry = _registry(args)
    try:
        notice = registry.rollback(to=args.to, reason="by hand (trainer rollback)")
    finally:
        registry.close()
    if args.json:
        print(json.dumps(notice, sort_keys=True))
    else:
        print(f"current version: {notice['current']} (was {notice['previous']})", file=sys.stdout)
    return 0


def registry(args: argparse.Namespace) -> int:
    """``registry rebuild``: the registry made to agree with the disk (nothing deleted)."""
    registry = _registry(args)
    try:
        restored = registry.restore_from_disk()
    finally:
        registry.close()
    if args.json:
        print(json.dumps(restored.to_json(), sort_keys=True))
        return 0
    for label, numbers in (
        ("re-registered", restored.reregistered),
        ("updated from their records", restored.updated),
        ("registered as unjudged (no record)", restored.unjudged),
        ("records written from the registry", restored.recorded),
    ):
        if numbers:
            print(f"{label}: {_listed(numbers)}")
    pointer = "none" if restored.current is None else str(restored.current)
    print(f"current version: {pointer}{' (restored)' if restored.current_restored else ''}")
    return 0


def _export(record: dict[str, Any]) -> str:
    """``full``, or a delta's base and chain (``delta of 4: 5 6 7``); ``-`` for a version without it."""
    if record.get("export") == "delta":
        return f"delta of {record.get('base')}: {' '.join(str(v) for v in record.get('chain') or [])}"
    return str(record.get("export") or "-")


def _listed(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def _num(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"
