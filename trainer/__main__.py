"""``python -m trainer``: offline fit and evaluation, the streaming sidecar and its registry (docs/cli.md).

python -m trainer fit --samples SAMPLES.jsonl [--samples MORE ...] --loss pu --export DIR [--seed N]
python -m trainer evaluate --model DIR --samples SAMPLES.jsonl --json
python -m trainer run --config TRAINER.yaml [--exit-when-idle 5s]
python -m trainer versions --config TRAINER.yaml [--redis-url URL] [--model-dir DIR] [--json]
python -m trainer rollback --config TRAINER.yaml [--redis-url URL] [--model-dir DIR] [--to VERSION]
python -m trainer registry rebuild --config TRAINER.yaml [--redis-url URL] [--model-dir DIR] [--json]
python -m trainer embeddings --model-dir DIR [--model-version N | --checkpoint] [--top K] [--json]
python -m trainer materialize --model-dir DIR --model-version N [--out DIR] [--json]

The conventions (common.cli): one-line errors naming the command and the flag; exit status 0 done,
1 the run failed, 2 bad arguments, a bad config, or an input or model directory that cannot be used.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere

from common.cli import EXIT_FAILED, EXIT_USAGE, Parser, command_prog, config_default, fail, positive_int
from common.errors import CommonError, ConfigError
from trainer import delta, embeddings, serving
from trainer.config import FitConfig, TrainerConfig
from trainer.errors import InputError, ModelDirError, TrainerError
from trainer.quiet import import_tensorflow
from trainer.sidecar import cli as sidecar_cli
from trainer.sidecar.errors import UsageError
from trainer.sidecar.join_contract import JoinContractError

log = logging.getLogger("trainer")
PROG = "python -m trainer"
# What the user typed or pointed at is unusable: exit status 2, as for argparse's own errors.
USAGE_ERRORS: tuple[type[Exception], ...] = (
    UsageError, ConfigError, InputError, ModelDirError, JoinContractError
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Offline fit and evaluation of the ODL ranking model, and its streaming trainer sidecar.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser(
        "fit",
        help="train on files of samples and export a SavedModel",
        description="Train on files of samples and export a SavedModel. Flags override the config file; the "
        "defaults shown are the config's own.",
    )
    fit.add_argument(
        "--samples",
        action="extend",
        nargs="+",
        required=True,
        metavar="FILE",
        help="JSONL or Avro container files of samples (repeatable)",
    )
    fit.add_argument(
        "--export", metavar="DIR",
        help="write the SavedModel here (atomically) (default: none: give it or --checkpoint-dir)",
    )
    fit.add_argument(
        "--checkpoint-dir", metavar="DIR", help="also write a tf.train checkpoint here (default: none)"
    )
    fit.add_argument(
        "--seed", type=int, help=f"random seed (same seed, same data: same model) {config_default(FitConfig, 'seed')}"
    )
    fit.add_argument(
        "--epochs", type=positive_int, metavar="N",
        help=f"passes over the samples {config_default(FitConfig, 'epochs')}",
    )
    fit.add_argument(
        "--batch-size", type=positive_int, metavar="N",
        help=f"samples per step {config_default(FitConfig, 'batch_size')}",
    )
    fit.add_argument(
        "--order", choices=("shuffle", "stream"), help=f"batch order {config_default(FitConfig, 'order')}"
    )
    fit.add_argument(
        "--warm-start", metavar="PATH", help="start from this checkpoint directory or export (default: none)"
    )
    sidecar_cli.add_loss_flags(fit)
    fit.add_argument(
        "--config", metavar="CONFIG.yaml", help="trainer config file (default: none: the built-in defaults)"
    )
    fit.add_argument(
        "--deadletter", metavar="FILE", help="write skipped bad records here, with reasons (default: none)"
    )
    fit.add_argument("--quiet", action="store_true", help="warnings and errors only on stderr")

    ev = sub.add_parser(
        "evaluate",
        help="AUC, log loss, prediction bias and RCE of an export on samples",
        description="AUC, log loss, prediction bias and RCE of an export on files of samples.",
    )
    ev.add_argument("--model", required=True, metavar="DIR", help="an export (or a base dir of versions)")
    ev.add_argument(
        "--samples", action="extend", nargs="+", required=True, metavar="FILE",
        help="JSONL or Avro container files of samples (repeatable)",
    )
    ev.add_argument(
        "--per",
        choices=("impression", "sample"),
        default="impression",
        help="impression: one row per impression with its final label (a NEGATIVE and its LATE_POSITIVE count "
        "once, as a positive); sample: every sample as it is",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument(
        "--deadletter", metavar="FILE", help="write skipped bad records here, with reasons (default: none)"
    )
    ev.add_argument("--quiet", action="store_true", help="warnings and errors only on stderr")
    sidecar_cli.add_parsers(sub)
    serving.add_parser(sub)
    embeddings.add_parser(sub)
    delta.add_parser(sub)
    return parser


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("trainer: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False
    quiet_tensorflow()


def quiet_tensorflow() -> None:
    """TensorFlow's and absl's own warnings (retracing, export notes) are not the user's business."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl comes with TensorFlow
        pass


def fit_config(args: argparse.Namespace) -> TrainerConfig:
    if args.distill_weight is not None and not args.distill_from:
        raise UsageError("--distill-weight needs --distill-from MODEL_DIR")
    overrides: dict[str, Any] = {
        "loss.name": args.loss,
        "fit.seed": args.seed,
        "fit.epochs": args.epochs,
        "fit.batch_size": args.batch_size,
        "fit.order": args.order,
        "loss.distill_weight": args.distill_weight,
    }
    config = TrainerConfig.load(args.config, overrides)
    if args.distill_from and config.loss.distill_weight == 0.0:
        config = TrainerConfig.load(args.config, {**overrides, "loss.distill_weight": sidecar_cli.TEACHER_WEIGHT})
    return config


def run_fit(args: argparse.Namespace) -> int:
    from trainer.fit import fit

    if not args.export and not args.checkpoint_dir:
        raise UsageError("give --export DIR (and/or --checkpoint-dir DIR)")
    result = fit(
        args.samples,
        fit_config(args),
        export=args.export,
        warm_start=args.warm_start,
        distill_from=args.distill_from,
        checkpoint_dir=args.checkpoint_dir,
        deadletter=args.deadletter,
    )
    print(json.dumps(result.to_json(), sort_keys=True))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from trainer.evaluate import evaluate

    report = evaluate(args.model, args.samples, deadletter=args.deadletter, per=args.per)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key in ("count", "positives", "auc", "logloss", "prediction_bias", "rce", "mean_label", "mean_prediction"):
            value = report[key]
            print(f"{key:>16}: {value:.6f}" if isinstance(value, float) else f"{key:>16}: {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = command_prog(args, PROG)
    _setup_logging(args.quiet)
    if args.command in ("fit", "evaluate", "run", delta.COMMAND):
        import_tensorflow()
    try:
        if args.command == "fit":
            return run_fit(args)
        if args.command == "evaluate":
            return run_evaluate(args)
        command = {
            "run": sidecar_cli.run,
            "versions": sidecar_cli.versions,
            "rollback": sidecar_cli.rollback,
            "registry": sidecar_cli.registry,
            serving.COMMAND: serving.run,
            embeddings.COMMAND: embeddings.run,
            delta.COMMAND: delta.run,
        }
        return command[args.command](args)
    except USAGE_ERRORS as exc:
        return fail(prog, exc, EXIT_USAGE)
    except (TrainerError, CommonError) as exc:
        return fail(prog, exc, EXIT_FAILED)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
