"""``python -m trainer``: offline fit and evaluation, the streaming sidecar and its registry (docs/cli.md).

python -m trainer fit --samples SAMPLES.jsonl [--samples MORE ...] --loss pu --export DIR [--seed N]
python -m trainer evaluate --model DIR --samples SAMPLES.jsonl --json
python -m trainer run --config TRAINER.yaml [--exit-when-idle 5s]
python -m trainer versions --config TRAINER.yaml [--redis-url URL] [--model-dir DIR] [--json]
python -m trainer rollback --config TRAINER.yaml [--redis-url URL] [--model-dir DIR] [--to VERSION]
python -m trainer registry rebuild --config TRAINER.yaml [--redis-url URL] [--model-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, NoReturn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported anywhere

from common.errors import CommonError
from trainer.config import LOSS_NAMES, TrainerConfig
from trainer.errors import TrainerError
from trainer.quiet import import_tensorflow
from trainer.sidecar import cli as sidecar_cli
from trainer.sidecar.errors import UsageError

log = logging.getLogger("trainer")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, no usage dump (docs/cli.md); exit status 2 as argparse's."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m trainer",
        description="Offline fit and evaluation of the ODL ranking model, and its streaming trainer sidecar.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    fit = sub.add_parser("fit", help="train on files of samples and export a SavedModel")
    fit.add_argument(
        "--samples",
        action="extend",
        nargs="+",
        required=True,
        metavar="FILE",
        help="JSONL or Avro container files of samples (repeatable)",
    )
    fit.add_argument("--loss", choices=LOSS_NAMES, help="delayed-feedback correction (default: pu)")
    fit.add_argument("--export", metavar="DIR", help="write the SavedModel here (atomically)")
    fit.add_argument("--checkpoint-dir", metavar="DIR", help="also write a tf.train checkpoint here")
    fit.add_argument("--seed", type=int, help="random seed (same seed, same data: same model)")
    fit.add_argument("--epochs", type=int, help="passes over the samples (default 3)")
    fit.add_argument("--batch-size", type=int, help="samples per step (default 256)")
    fit.add_argument("--order", choices=("shuffle", "stream"), help="batch order (default shuffle)")
    fit.add_argument("--warm-start", metavar="PATH", help="start from this checkpoint directory or export")
    fit.add_argument("--distill-from", metavar="MODEL_DIR", help="distil toward this export's predictions")
    fit.add_argument(
        "--distill-weight",
        type=float,
        metavar="LAMBDA",
        help="weight of the distillation term (default 0.5 with --distill-from)",
    )
    fit.add_argument("--config", metavar="YAML", help="trainer config file; flags override it")
    fit.add_argument("--deadletter", metavar="FILE", help="write skipped bad records here, with reasons")
    fit.add_argument("--quiet", action="store_true", help="warnings and errors only on stderr")

    ev = sub.add_parser("evaluate", help="AUC, log loss, prediction bias and RCE of an export on samples")
    ev.add_argument("--model", required=True, metavar="DIR", help="an export (or a base dir of versions)")
    ev.add_argument("--samples", action="extend", nargs="+", required=True, metavar="FILE")
    ev.add_argument(
        "--per",
        choices=("impression", "sample"),
        default="impression",
        help="impression (default): one row per impression with its final label (a NEGATIVE and its "
        "LATE_POSITIVE count once, as a positive); sample: every sample as it is",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--deadletter", metavar="FILE", help="write skipped bad records here, with reasons")
    ev.add_argument("--quiet", action="store_true", help="warnings and errors only on stderr")
    sidecar_cli.add_parsers(sub)
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
        raise TrainerError("--distill-weight needs --distill-from MODEL_DIR")
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
        config = TrainerConfig.load(args.config, {**overrides, "loss.distill_weight": 0.5})
    return config


def run_fit(args: argparse.Namespace) -> int:
    from trainer.fit import fit

    if not args.export and not args.checkpoint_dir:
        raise TrainerError("give --export DIR (and/or --checkpoint-dir DIR)")
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
    _setup_logging(args.quiet)
    if args.command in ("fit", "evaluate", "run"):
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
        }
        return command[args.command](args)
    except UsageError as exc:
        print(f"trainer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (TrainerError, CommonError) as exc:
        print(f"trainer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"trainer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
