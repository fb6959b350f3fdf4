"""Delayed-feedback benchmark: ``python -m trainer.bench.delayed_feedback``.

For each seed: generate events with known truth (``python -m jobs.generate``; the training
impressions span ``--train-hours``, the test impressions follow), join them into samples (``python -m
jobs.sample_join replay``, both with the jobs venv's Python), then fit one model per loss, plus an
*oracle* (``naive`` on the training impressions with their true labels, one sample each), and evaluate
all of them on the test impressions with their TRUE labels, in two settings:

- online (the headline): the samples emitted by the time the last training impression is served (the
  later clicks are still to come), one pass in emission order (``fit --order stream --epochs 1``, how
  the sidecar trains); the oracle is one pass in impression-time order;
- offline: every sample of the training impressions, shuffled epochs (``fit``'s defaults).

Reported per setting (mean and spread over seeds): AUC, log loss and prediction bias per loss, with
R-AUC and R-NLL, the share of the naive-to-oracle gap a loss closes (the ES-DFM paper's Table 1):

    R-AUC = (AUC - AUC_naive) / (AUC_oracle - AUC_naive)
    R-NLL = (NLL_naive - NLL) / (NLL_naive - NLL_oracle)

A last table shows every loss's stability on a three-day stream, one pass in emission order.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common.cli import Parser
from common.output import write_atomic
from trainer.bench.data import ROOT, drop_negatives, prepare_data, train_rate, write_jsonl
from trainer.bench.grid import grid_block
from trainer.bench.report import (
    NOTES,
    OFFLINE,
    ONLINE,
    ORACLE,
    STABILITY_HOURS,
    STABILITY_POINTS,
    markdown,
    stability_markdown,
)
from trainer.config import TrainerConfig
from trainer.errors import TrainerError
from trainer.losses import LOSS_NAMES


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def fit_and_evaluate(train: Path, test: Path, export: Path, config: TrainerConfig) -> dict[str, Any]:
    from trainer.evaluate import evaluate
    from trainer.fit import fit

    result = fit([train], config, export=export)
    report = evaluate(export, [test])
    report["fit_seconds"] = result.seconds
    return report


def setting_config(base: TrainerConfig, setting: str, loss: str, epochs: int) -> TrainerConfig:
    """Online: one pass in the stream's order (as the sidecar trains); offline: shuffled epochs."""
    fit_update: dict[str, Any] = {"order": "stream", "epochs": 1} if setting == ONLINE else {"epochs": epochs}
    return base.model_copy(
        update={"loss": base.loss.model_copy(update={"name": loss}), "fit": base.fit.model_copy(update=fit_update)}
    )


def run_seed(args: argparse.Namespace, seed: int) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, Any]]:
    """{setting: {loss or oracle: evaluation}} for one seed's data, and the data's statistics."""
    directory = Path(args.workdir) / f"seed{seed}"
    started = time.monotonic()
    split = prepare_data(args, seed, directory, train_rate(args))
    _say(f"seed {seed}: data ready in {time.monotonic() - started:.0f}s: {json.dumps(split.stats)}")
    base = TrainerConfig.load(args.config, {"fit.seed": seed})
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for setting in args.settings:
        stream = split.online if setting == ONLINE else split.offline
        runs = [(loss, stream, loss) for loss in args.losses] + [(ORACLE, split.oracle, "naive")]
        results[setting] = {}
        for name, train, loss in runs:
            config = setting_config(base, setting, loss, args.epochs)
            report = fit_and_evaluate(train, split.test, directory / f"model-{setting}-{name}", config)
            results[setting][name] = report
            _say(
                f"seed {seed} {setting:>7} {name:>6}: auc {report['auc']:.4f} logloss {report['logloss']:.5f} "
                f"bias {report['prediction_bias']:.4f} ({report['fit_seconds']:.0f}s)"
            )
    return results, split.stats


def stability(args: argparse.Namespace, seed: int) -> list[dict[str, Any]]:
    """Every loss on a long stream, one pass in emission order, the way the sidecar consumes it.

    The training impressions span three days, so that the late positives (up to 24 h late) arrive
    among newer impressions and the estimate of the clicks still to come reaches the horizon. Also PU
    with its bounds switched off, and PU on the stream with 90% of its NEGATIVEs dropped (negative
    sampling without reweighting, or lost negatives: most undo terms have nothing to undo). Along the
    pass: prediction bias and log loss on the test impressions, and the largest test logit.
    """
    import numpy as np

    from trainer import metrics
    from trainer.fit import setup_determinism, targets
    from trainer.pipeline import batch_rows
    from trainer.samples import SampleTable, read_samples
    from trainer.state import TrainerState

    directory = Path(args.workdir) / f"stability-seed{seed}"
    rate = args.impressions * (1.0 - args.test_fraction) / (STABILITY_HOURS * 3600.0)
    split = prepare_data(args, seed, directory, rate)
    with open(split.online, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    complete = SampleTable(read_samples([split.online])[0])
    dropped = SampleTable(read_samples([write_jsonl(directory / "sampled.jsonl", drop_negatives(rows, 0.9, seed))])[0])
    test = SampleTable(read_samples([split.test])[0])
    unbounded: dict[str, Any] = {"pu_logit_bound": 1e9, "pu_nnpu": False}
    variants: list[tuple[str, dict[str, Any], SampleTable, str]] = [
        (loss, {}, complete, "complete stream") for loss in args.losses
    ]
    variants += [("pu", unbounded, complete, "complete stream, bounds off")]
    variants += [("pu", {}, dropped, "90% of NEGATIVEs dropped"), ("pu", unbounded, dropped, "90% dropped, bounds off")]
    variants += [("naive", {}, dropped, "90% of NEGATIVEs dropped")]
    base = TrainerConfig.load(args.config, {"fit.seed": seed})
    report = []
    for loss, overrides, train, stream_name in variants:
        config = setting_config(base, ONLINE, loss, 1)
        config = config.model_copy(update={"loss": config.loss.model_copy(update=overrides)})
        setup_determinism(seed)
        state = TrainerState.create(config, train)
        prepared, test_prepared = state.prepare(train), state.prepare(test)
        batches = list(batch_rows(train, config.fit.batch_size, "stream", seed, 0))
        marks = {int(len(batches) * k / STABILITY_POINTS) - 1: k for k in range(1, STABILITY_POINTS + 1)}
        for index, batch in enumerate(batches):
            state.train_on_batch(state.encode(prepared, batch), targets(train, batch, None))
            if index in marks:
                logits = state.logits(state.encoder.peek(test_prepared, np.arange(len(test))))
                scores = metrics.evaluate(test.labels, 1.0 / (1.0 + np.exp(-logits)))
                report.append(
                    {
                        "variant": f"{loss}, {stream_name}",
                        "point": marks[index],
                        "prediction_bias": scores["prediction_bias"],
                        "logloss": scores["logloss"],
                        "max_logit": float(np.max(logits)),
                    }
                )
        last = report[-1]
        _say(
            f"stability {last['variant']}: bias {last['prediction_bias']:.3f} "
            f"log loss {last['logloss']:.4f} max logit {last['max_logit']:.1f}"
        )
    return report


def _machine() -> str:
    from trainer.fit import choose_device

    return f"{os.cpu_count()} CPU cores, device {choose_device()[1]}"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m trainer.bench.delayed_feedback", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one small seed, naive and pu, online only (for tests)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--impressions", type=int, default=80_000)
    p.add_argument("--train-hours", type=float, default=12.0, help="event time the training impressions span")
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of impressions after the training ones")
    # A stream where late labels matter: a high click rate, half of the clicks after the window.
    p.add_argument("--ctr", type=float, default=0.3, help="jobs.generate --ctr (default 0.3)")
    p.add_argument("--late-fraction", type=float, default=0.5, help="jobs.generate --late-fraction (default 0.5)")
    p.add_argument("--beyond-horizon-fraction", type=float, help="jobs.generate --beyond-horizon-fraction")
    p.add_argument("--users", type=int)
    p.add_argument("--items", type=int)
    p.add_argument("--losses", nargs="+", choices=LOSS_NAMES, default=list(LOSS_NAMES))
    p.add_argument("--settings", nargs="+", choices=(ONLINE, OFFLINE), default=[ONLINE, OFFLINE])
    p.add_argument("--epochs", type=int, default=TrainerConfig().fit.epochs, help="offline epochs")
    p.add_argument("--config", help="trainer config YAML for every fit")
    p.add_argument("--workdir", default=str(ROOT / ".bench" / "trainer"))
    p.add_argument("--jobs-python", type=Path, default=ROOT / ".venv" / "jobs" / "bin" / "python")
    p.add_argument("--no-stability", dest="stability", action="store_false", help="skip the long-stream run")
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.seeds, args.impressions, args.settings = args.seeds[:1], 12_000, [ONLINE]
        args.losses, args.stability = ["naive", "pu"], False
    if "naive" not in args.losses:
        args.losses = ["naive", *args.losses]
    if not 0.0 < args.test_fraction < 1.0 or args.train_hours <= 0 or args.impressions < 100:
        raise SystemExit("bench: error: need 0 < --test-fraction < 1, --train-hours > 0, --impressions >= 100")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trainer.__main__ import quiet_tensorflow

    logging.getLogger("trainer").setLevel(logging.WARNING)
    quiet_tensorflow()
    try:
        if not args.jobs_python.exists():
            raise TrainerError(
                f"jobs venv Python not found at {args.jobs_python} (run make setup, or pass --jobs-python)"
            )
        per_seed, stats = [], []
        for seed in args.seeds:
            results, split_stats = run_seed(args, seed)
            per_seed.append(results)
            stats.append(split_stats)
        report = markdown(per_seed, [*args.losses, ORACLE], args, stats)
        if args.stability:
            report += (
                f"\n\n## Long-stream stability\n\nSeed {args.seeds[0]}, the same generator flags with the "
                f"training impressions spread over {STABILITY_HOURS:g} h; one pass in emission order over the "
                "samples emitted by the last of them (defaults otherwise); test: the impressions after them with "
                "their true labels, evaluated along the pass:\n\n" + stability_markdown(stability(args, args.seeds[0]))
            )
    except TrainerError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print(report)
    if args.out:
        command = "python -m trainer.bench.delayed_feedback " + " ".join(argv if argv is not None else sys.argv[1:])
        # The grid's section (python -m trainer.bench.grid --out) stays as it was.
        grid = grid_block(args.out.read_text(encoding="utf-8")) if args.out.exists() else None
        write_atomic(
            args.out,
            "# Trainer: delayed-feedback benchmark\n\n"
            "Events with known truth from `jobs.generate`, joined into samples by `jobs.sample_join replay`; one "
            "model per `--loss`, plus an oracle (`naive` on the training impressions with their true labels), all "
            "evaluated on the impressions that follow with their true labels. R-AUC and R-NLL are the share of the "
            "naive-to-oracle gap a loss closes (ES-DFM, Yang et al. 2021, Table 1).\n\n"
            f"Produced by `.venv/trainer/bin/{command}` on {_machine()}.\n\n{report}\n\n{NOTES}"
            + (f"\n{grid}\n" if grid else ""),
        )
    write_atomic(Path(args.workdir) / "results.json", json.dumps(per_seed, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
