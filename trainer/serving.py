"""``trainer serving-config``: a TF Serving model config that serves the registry's current version.

The sidecar writes every version it exports to ``<model-dir>/<version>/`` (TF Serving's layout), and a
refused or rolled-back version stays there, so TF Serving's default policy (the highest number) would
serve versions the gate refused. This writes a ``model_config_list`` whose ``model_version_policy``
names the current version only; TF Serving, started with ``--model_config_file`` and
``--model_config_file_poll_wait_seconds``, re-reads it and moves to each new current version, and
back on a rollback (docs/serving.md).

The current version: the pointer kept on disk (``<model-dir>/current.json``, which the registry
writes before Redis) and, when ``--config`` or ``--redis-url`` gives the registry's Redis, the
registry's ``current()``. Should they differ (Redis missed a change while it was down, or was
replaced), the disk wins, as the registry's own rebuild decides, and a warning says so; an unreachable
Redis is a warning too. Nothing here imports TensorFlow: the command runs beside TF Serving in a
small container.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from common.output import write_atomic
from trainer.errors import TrainerError

log = logging.getLogger("trainer")

COMMAND = "serving-config"


class ServingError(TrainerError):
    """No version to serve: nothing published in the model directory, or the current one is not on disk."""


def _quoted(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_config(name: str, base_path: str, version: int) -> str:
    """TF Serving's ``ModelServerConfig`` in text format: one model, pinned to ``version``."""
    return (
        f"# TF Serving model config (--model_config_file): {name} at version {version}, the registry's current\n"
        "# version, written by python -m trainer serving-config; rewrite it when the pointer moves.\n"
        "model_config_list {\n"
        "  config {\n"
        f"    name: {_quoted(name)}\n"
        f"    base_path: {_quoted(base_path)}\n"
        '    model_platform: "tensorflow"\n'
        "    model_version_policy {\n"
        "      specific {\n"
        f"        versions: {version}\n"
        "      }\n"
        "    }\n"
        "  }\n"
        "}\n"
    )


def current_version(model_dir: Path, registry: Any | None = None) -> int:
    """The version to serve: the disk's pointer, checked against the registry's when one is given."""
    from trainer.sidecar.errors import Unavailable
    from trainer.sidecar.versions import VersionStore

    on_disk = VersionStore(model_dir, keep=1).read_current()
    in_redis = None
    if registry is not None:
        try:
            in_redis = registry.current()
        except Unavailable as exc:
            log.warning("the registry's Redis is unreachable (%s); serving the pointer on disk", exc)
        if in_redis is not None and on_disk is not None and in_redis != on_disk:
            log.warning(
                "the registry's Redis points at version %d, %s at version %d: serving %d, the disk's "
                "(the registry writes it first; python -m trainer registry rebuild makes Redis agree)",
                in_redis, model_dir / "current.json", on_disk, on_disk,
            )
    version = on_disk if on_disk is not None else in_redis
    if version is None:
        raise ServingError(
            f"no current version in {model_dir}: nothing was published there yet "
            "(no current.json, and no pointer in the registry's Redis)"
        )
    # TF Serving loads a version directory holding saved_model.pb (trainer.export.is_export, without TensorFlow)
    if not (model_dir / str(version) / "saved_model.pb").is_file():
        raise ServingError(f"the current version {version} is not a SavedModel on disk: {model_dir / str(version)}")
    return version


def add_parser(sub: Any) -> None:
    """``serving-config`` under the trainer's subcommands."""
    p = sub.add_parser(
        COMMAND,
        help="write a TF Serving model config that serves the registry's current version",
        description="Write a TF Serving model config (model_config_list, version policy 'specific') that "
        "serves the current version of a model directory: its pointer on disk, checked against the "
        "registry's Redis when --config or --redis-url gives it.",
    )
    p.add_argument("--model-dir", metavar="DIR",
                   help="the sidecar's model directory (default: the config's sidecar.model_dir)")
    p.add_argument("--config", metavar="YAML",
                   help="trainer config file: the model dir and the registry's Redis (default: none: --model-dir, "
                   "read from disk)")
    p.add_argument("--redis-url", metavar="URL", help="the registry's Redis (default: the config's sidecar.redis.url)")
    p.add_argument("--name", help="the model's name in TF Serving (default: the config's task, else the dir's name)")
    p.add_argument(
        "--base-path",
        metavar="PATH",
        help="the model directory as TF Serving sees it, e.g. /models/click in its container (default: DIR)",
    )
    p.add_argument("--out", metavar="FILE", help="write the config here, atomically (default: stdout)")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only on stderr")


def run(args: argparse.Namespace) -> int:
    """Write the config; 0, or a ServingError / UsageError (one line) for the CLI to print."""
    from trainer.config import TrainerConfig
    from trainer.sidecar.errors import UsageError

    if args.model_dir is None and args.config is None:
        raise UsageError("give --model-dir DIR (or --config YAML naming sidecar.model_dir)")
    sidecar = TrainerConfig.load(args.config, {"sidecar.model_dir": args.model_dir}).sidecar
    model_dir = Path(sidecar.model_dir)
    if not model_dir.is_dir():
        raise ServingError(f"model directory {model_dir} does not exist")
    registry = None
    if args.config is not None or args.redis_url is not None:
        from trainer.sidecar import cli as sidecar_cli

        # the registry the versions command reads, from the same flags (a few seconds of retries)
        registry = sidecar_cli._registry(
            argparse.Namespace(config=args.config, redis_url=args.redis_url, model_dir=str(model_dir))
        )
    try:
        version = current_version(model_dir, registry)
    finally:
        if registry is not None:
            registry.close()
    name = args.name or (sidecar.task if args.config is not None else model_dir.resolve().name)
    text = model_config(name, args.base_path or str(model_dir.resolve()), version)
    if args.out is None:
        print(text, end="")
    else:
        write_atomic(Path(args.out), text)
        log.info("%s: serves %s version %d (%s)", args.out, name, version, model_dir)
    return 0
