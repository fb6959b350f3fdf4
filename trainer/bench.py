"""Delayed-feedback benchmark: ``python -m trainer.bench``.

For each seed: generate events with known truth (``python -m jobs.generate``), join them into samples
(``python -m jobs.sample_join replay``, both with the jobs venv's Python), split by impression time,
then fit one model per loss on the earlier part of the stream, plus an *oracle* (``naive`` on the
same impressions with their true labels, one sample each), and evaluate all of them on the later
impressions with their TRUE labels. The report is one Markdown table (mean and spread over seeds) of
AUC, log loss and prediction bias per loss, with R-AUC and R-NLL: the share of the naive-to-oracle gap
a loss closes (as in the ES-DFM paper's Table 1):

    R-AUC = (AUC - AUC_naive) / (AUC_oracle - AUC_naive)
    R-NLL = (NLL_naive - NLL) / (NLL_naive - NLL_oracle)

A second table shows PU's stability on a long stream: many passes in stream order over a stream that
starts after its impressions' NEGATIVEs were emitted (a sidecar started late: the LATE_POSITIVEs'
undo terms have nothing to undo), with the bounded loss and with the bounds switched off.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from trainer.config import LOSS_NAMES, TrainerConfig
from trainer.errors import TrainerError

log = logging.getLogger("trainer.bench")
ROOT = Path(__file__).resolve().parent.parent
ORACLE = "oracle"


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise TrainerError(f"{' '.join(command[1:4])} failed ({result.returncode}): {' | '.join(tail)}")


@dataclass(frozen=True)
class Split:
    train: Path  # the stream's samples of the earlier impressions
    oracle: Path  # the same impressions, one sample each, true labels
    test: Path  # the later impressions, one sample each, true labels
    stats: dict[str, Any]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
    return path


def split_samples(samples_path: Path, truth_path: Path, test_fraction: float, out_dir: Path) -> Split:
    """Split by impression time; attach true labels to the oracle and test sets."""
    truth = {}
    with open(truth_path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            truth[row["impression_id"]] = int(bool(row["clicked"]))
    with open(samples_path, encoding="utf-8") as fh:
        samples = [json.loads(line) for line in fh if line.strip()]
    times = sorted({s["impression_time_ms"] for s in samples})
    cutoff = times[int(len(times) * (1.0 - test_fraction))]
    train = [s for s in samples if s["impression_time_ms"] < cutoff]

    def truly_labelled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for s in rows:
            if s["attribution"] == "LATE_POSITIVE":
                continue
            label = truth[s["impression_id"]]
            out.append({**s, "label": label, "attribution": "POSITIVE" if label else "NEGATIVE"})
        return out

    oracle = truly_labelled(train)
    test = truly_labelled([s for s in samples if s["impression_time_ms"] >= cutoff])
    late = sum(s["attribution"] == "LATE_POSITIVE" for s in train)
    stats = {
        "train_samples": len(train),
        "train_impressions": len(oracle),
        "train_late_positives": late,
        "train_observed_ctr": sum(s["label"] for s in train) / max(1, len(train)),
        "train_true_ctr": sum(s["label"] for s in oracle) / max(1, len(oracle)),
        "test_impressions": len(test),
        "test_true_ctr": sum(s["label"] for s in test) / max(1, len(test)),
    }
    return Split(
        write_jsonl(out_dir / "train.jsonl", train),
        write_jsonl(out_dir / "oracle.jsonl", oracle),
        write_jsonl(out_dir / "test.jsonl", test),
        stats,
    )


def prepare_data(args: argparse.Namespace, seed: int, directory: Path) -> Split:
    directory.mkdir(parents=True, exist_ok=True)
    events, truth, samples = directory / "events.jsonl", directory / "truth.jsonl", directory / "samples.jsonl"
    python = str(args.jobs_python)
    generate = [
        python,
        "-m",
        "jobs.generate",
        "--out",
        str(events),
        "--truth",
        str(truth),
        "--quiet",
        "--impressions",
        str(args.impressions),
        "--seed",
        str(seed),
    ]
    for flag in ("ctr", "late_fraction", "beyond_horizon_fraction", "users", "items"):
        value = getattr(args, flag)
        if value is not None:
            generate += [f"--{flag.replace('_', '-')}", str(value)]
    _run(generate)
    _run(
        [
            python,
            "-m",
            "jobs.sample_join",
            "replay",
            "--events",
            str(events),
            "--out",
            str(samples),
            "--window",
            "10m",
            "--horizon",
            "24h",
            "--quiet",
        ]
    )
    return split_samples(samples, truth, args.test_fraction, directory)


def fit_and_evaluate(train: Path, test: Path, export: Path, config: TrainerConfig) -> dict[str, Any]:
    from trainer.evaluate import evaluate
    from trainer.fit import fit

    result = fit([train], config, export=export)
    report = evaluate(export, [test])
    report["fit_seconds"] = result.seconds
    return report


def run_seed(
    args: argparse.Namespace, seed: int
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    directory = Path(args.workdir) / f"seed{seed}"
    started = time.monotonic()
    split = prepare_data(args, seed, directory)
    _say(f"seed {seed}: data ready in {time.monotonic() - started:.0f}s: {json.dumps(split.stats)}")
    base = TrainerConfig.load(args.config, {"fit.seed": seed, "fit.epochs": args.epochs})
    results: dict[str, dict[str, Any]] = {}
    runs = [(loss, split.train, loss) for loss in args.losses] + [(ORACLE, split.oracle, "naive")]
    for name, train, loss in runs:
        config = base.model_copy(update={"loss": base.loss.model_copy(update={"name": loss})})
        report = fit_and_evaluate(train, split.test, directory / f"model-{name}", config)
        results[name] = report
        _say(
            f"seed {seed} {name:>6}: auc {report['auc']:.4f} logloss {report['logloss']:.5f} "
            f"bias {report['prediction_bias']:.4f} ({report['fit_seconds']:.0f}s)"
        )
    stable = stability(split, seed, args.stability_passes, base, directory) if args.stability_passes else []
    return results, split.stats, stable


def drop_late_negatives(rows: list[dict[str, Any]], fraction: float, seed: int) -> list[dict[str, Any]]:
    """The stream without the NEGATIVE of ``fraction`` of the impressions that have a LATE_POSITIVE."""
    import numpy as np

    late = sorted({s["impression_id"] for s in rows if s["attribution"] == "LATE_POSITIVE"})
    rng = np.random.default_rng(seed)
    lost = {i for i, drop in zip(late, rng.random(len(late)) < fraction, strict=True) if drop}
    return [s for s in rows if not (s["attribution"] == "NEGATIVE" and s["impression_id"] in lost)]


def stability(split: Split, seed: int, passes: int, base: TrainerConfig, directory: Path) -> list[dict[str, Any]]:
    """PU on a long stream in stream order, half of the late positives' NEGATIVEs unseen; per pass:
    prediction bias and log loss on the test impressions, and the largest logit."""
    import numpy as np

    from trainer import metrics
    from trainer.fit import setup_determinism, targets
    from trainer.pipeline import batch_rows
    from trainer.samples import SampleTable, read_samples

    with open(split.train, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    stream = write_jsonl(directory / "stream-lost-negatives.jsonl", drop_late_negatives(rows, 0.5, seed))
    train = SampleTable(read_samples([stream])[0])
    test = SampleTable(read_samples([split.test])[0])
    variants = {
        "pu (bounded, nnPU)": {},
        "pu without bounds": {"pu_logit_bound": 1e9, "pu_nnpu": False},
    }
    report = []
    for name, loss_overrides in variants.items():
        from trainer.state import TrainerState

        config = base.model_copy(
            update={
                "loss": base.loss.model_copy(update={"name": "pu", **loss_overrides}),
                "fit": base.fit.model_copy(update={"order": "stream"}),
            }
        )
        setup_determinism(seed)
        state = TrainerState.create(config, train)
        prepared, test_prepared = state.prepare(train), state.prepare(test)
        for done in range(1, passes + 1):
            for batch in batch_rows(train, config.fit.batch_size, "stream", seed, done):
                state.train_on_batch(state.encode(prepared, batch), targets(train, batch, None))
            logits = state.logits(state.encoder.peek(test_prepared, np.arange(len(test))))
            scores = metrics.evaluate(test.labels, 1.0 / (1.0 + np.exp(-logits)))
            report.append(
                {
                    "variant": name,
                    "pass": done,
                    "prediction_bias": scores["prediction_bias"],
                    "logloss": scores["logloss"],
                    "max_logit": float(np.max(logits)),
                }
            )
        _say(
            f"stability {name}: pass {passes} bias {report[-1]['prediction_bias']:.3f} "
            f"max logit {report[-1]['max_logit']:.1f}"
        )
    return report


def stability_markdown(report: list[dict[str, Any]], passes: int) -> str:
    shown = sorted({1, 2, passes // 2, passes} - {0})
    lines = [
        "| variant | " + " | ".join(f"pass {p}: bias / log loss / max logit" for p in shown) + " |",
        "| --- |" + " --- |" * len(shown),
    ]
    for variant in dict.fromkeys(r["variant"] for r in report):
        cells = []
        for p in shown:
            (row,) = [r for r in report if r["variant"] == variant and r["pass"] == p]
            cells.append(f"{row['prediction_bias']:.3f} / {row['logloss']:.4f} / {row['max_logit']:.1f}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def relative(results: dict[str, dict[str, Any]], loss: str) -> tuple[float | None, float | None]:
    naive, oracle, mine = results["naive"], results[ORACLE], results[loss]
    auc_gap = oracle["auc"] - naive["auc"]
    nll_gap = naive["logloss"] - oracle["logloss"]
    r_auc = (mine["auc"] - naive["auc"]) / auc_gap if abs(auc_gap) > 1e-12 else None
    r_nll = (naive["logloss"] - mine["logloss"]) / nll_gap if abs(nll_gap) > 1e-12 else None
    return r_auc, r_nll


def pu_check(results: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """The acceptance check of issue 6 for ``pu`` against ``naive`` and the oracle."""
    naive, pu = results["naive"], results["pu"]
    _, r_nll = relative(results, "pu")
    return {
        "closes_30pct_nll_gap": r_nll is not None and r_nll >= 0.3,
        "halves_calibration_error": abs(pu["prediction_bias"] - 1) <= 0.5 * abs(naive["prediction_bias"] - 1),
        "no_auc_loss": pu["auc"] >= naive["auc"],
    }


def _fmt(values: list[float | None], digits: int) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    mean = statistics.fmean(present)
    if len(present) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(present):.{digits}f}"


def markdown(
    per_seed: list[dict[str, dict[str, Any]]], names: list[str], args: argparse.Namespace, stats: list[dict[str, Any]]
) -> str:
    lines = [
        "| loss | AUC | log loss | prediction bias | \\|bias - 1\\| | R-AUC | R-NLL |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        rows = [r[name] for r in per_seed]
        rel = [relative(r, name) if name not in ("naive", ORACLE) else (None, None) for r in per_seed]
        label = "oracle (naive on true labels)" if name == ORACLE else name
        lines.append(
            f"| {label} | {_fmt([r['auc'] for r in rows], 4)} | {_fmt([r['logloss'] for r in rows], 5)} | "
            f"{_fmt([r['prediction_bias'] for r in rows], 4)} | "
            f"{_fmt([abs(r['prediction_bias'] - 1) for r in rows], 4)} | "
            f"{_fmt([x[0] for x in rel], 2) if name not in ('naive', ORACLE) else ('0' if name == 'naive' else '1')} | "
            f"{_fmt([x[1] for x in rel], 2) if name not in ('naive', ORACLE) else ('0' if name == 'naive' else '1')} |"
        )
    checks = [pu_check(r) for r in per_seed] if "pu" in names and "naive" in names else []
    lines.append("")
    lines.append(
        f"Seeds {', '.join(str(s) for s in args.seeds)}; {args.impressions} impressions each "
        f"(`jobs.generate` {_generator_flags(args)}), joined by `replay --window 10m --horizon 24h`; "
        f"train on the first {100 * (1 - args.test_fraction):.0f}% of impressions "
        f"(stream: ~{statistics.fmean(s['train_samples'] for s in stats):.0f} samples, "
        f"{statistics.fmean(s['train_late_positives'] for s in stats):.0f} LATE_POSITIVE; observed CTR "
        f"{statistics.fmean(s['train_observed_ctr'] for s in stats):.4f}, true "
        f"{statistics.fmean(s['train_true_ctr'] for s in stats):.4f}), evaluate on the last "
        f"{100 * args.test_fraction:.0f}% with their true labels; {args.epochs} epochs. "
        "Mean ± standard deviation over seeds."
    )
    if checks:
        lines.append("")
        passed = {key: sum(c[key] for c in checks) for key in checks[0]}
        lines.append(
            "Issue-6 check for `pu` (per seed): closes ≥ 30% of the naive-to-oracle log-loss gap "
            f"{passed['closes_30pct_nll_gap']}/{len(checks)}; halves naive's |bias - 1| "
            f"{passed['halves_calibration_error']}/{len(checks)}; AUC ≥ naive's {passed['no_auc_loss']}/{len(checks)}."
        )
    return "\n".join(lines)


def _generator_flags(args: argparse.Namespace) -> str:
    flags = [
        f"--{flag.replace('_', '-')} {getattr(args, flag)}"
        for flag in ("ctr", "late_fraction", "beyond_horizon_fraction", "users", "items")
        if getattr(args, flag) is not None
    ]
    return " ".join(flags) if flags else "defaults"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--impressions", type=int, default=50_000)
    p.add_argument("--ctr", type=float, help="jobs.generate --ctr")
    p.add_argument("--late-fraction", type=float, help="jobs.generate --late-fraction")
    p.add_argument("--beyond-horizon-fraction", type=float, help="jobs.generate --beyond-horizon-fraction")
    p.add_argument("--users", type=int)
    p.add_argument("--items", type=int)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--losses", nargs="+", choices=LOSS_NAMES, default=list(LOSS_NAMES))
    p.add_argument("--epochs", type=int, default=TrainerConfig().fit.epochs)
    p.add_argument("--config", help="trainer config YAML for every fit")
    p.add_argument("--workdir", default=str(ROOT / ".bench" / "trainer"))
    p.add_argument("--jobs-python", type=Path, default=ROOT / ".venv" / "jobs" / "bin" / "python")
    p.add_argument(
        "--stability-passes",
        type=int,
        default=8,
        help="passes of the long-stream stability run on the first seed (0: skip it)",
    )
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trainer.__main__ import quiet_tensorflow

    logging.getLogger("trainer").setLevel(logging.WARNING)
    quiet_tensorflow()
    try:
        if not args.jobs_python.exists():
            raise TrainerError(
                f"jobs venv Python not found at {args.jobs_python} (run make setup, or pass --jobs-python)"
            )
        if "naive" not in args.losses:
            args.losses = ["naive", *args.losses]
        per_seed, stats, stable = [], [], []
        for number, seed in enumerate(args.seeds):
            passes = args.stability_passes
            args.stability_passes = passes if number == 0 else 0
            results, split_stats, seed_stable = run_seed(args, seed)
            args.stability_passes = passes
            per_seed.append(results)
            stats.append(split_stats)
            stable += seed_stable
        report = markdown(per_seed, [*args.losses, ORACLE], args, stats)
        if stable:
            report += (
                "\n\nLong-stream stability (seed "
                f"{args.seeds[0]}): PU in stream order for {args.stability_passes} passes over the training "
                "stream with the NEGATIVE of half of the late-positive impressions removed (a trainer that "
                "started after they were emitted, or lost them): those LATE_POSITIVEs' undo terms have "
                "nothing to undo. Test bias, log loss and the largest test logit after each pass:\n\n"
                + stability_markdown(stable, args.stability_passes)
            )
    except TrainerError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")
    (Path(args.workdir) / "results.json").write_text(json.dumps(per_seed, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
