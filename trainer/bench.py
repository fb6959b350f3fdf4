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


def split_samples(
    samples_path: Path, truth_path: Path, test_fraction: float, out_dir: Path, by: str = "impression"
) -> Split:
    """Split at an impression time T; attach true labels to the oracle and test sets.

    The test set is the impressions at or after T. The training stream is, ``by="impression"``, every
    sample of the impressions before T (their late positives included, however late), or
    ``by="emit"``, the samples emitted before T (what a trainer running at T has seen).
    """
    truth = {}
    with open(truth_path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            truth[row["impression_id"]] = int(bool(row["clicked"]))
    with open(samples_path, encoding="utf-8") as fh:
        samples = [json.loads(line) for line in fh if line.strip()]
    times = sorted({s["impression_time_ms"] for s in samples})
    cutoff = times[int(len(times) * (1.0 - test_fraction))]
    key = "impression_time_ms" if by == "impression" else "emit_time_ms"
    train = [s for s in samples if s[key] < cutoff]

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


def prepare_data(
    args: argparse.Namespace, seed: int, directory: Path, extra: list[str] | None = None, by: str = "impression"
) -> Split:
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
    _run(generate + (extra or []))
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
    return split_samples(samples, truth, args.test_fraction, directory, by)


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
    stable = stability(args, seed, base) if args.stability_passes else []
    return results, split.stats, stable


def drop_negatives(rows: list[dict[str, Any]], fraction: float, seed: int) -> list[dict[str, Any]]:
    """The stream with ``fraction`` of its NEGATIVEs dropped at random (and nothing reweighted)."""
    import numpy as np

    keep = np.random.default_rng(seed).random(len(rows)) >= fraction
    return [s for s, k in zip(rows, keep, strict=True) if k or s["attribution"] != "NEGATIVE"]


STABILITY_RATE = 0.3  # impressions per second of event time: 50k impressions span ~2 days


def stability(args: argparse.Namespace, seed: int, base: TrainerConfig) -> list[dict[str, Any]]:
    """PU on a long stream in stream order, the way the sidecar consumes it.

    The events are generated slowly enough (``--rate``) that the late positives (up to 24 h late)
    arrive among newer impressions, as in production, and the stream is what a trainer at the split
    time has seen (samples emitted before it). Four runs: the complete stream, and the stream with
    90% of its NEGATIVEs dropped (negative sampling without reweighting, or lost negatives) -- where
    most LATE_POSITIVE undo terms have nothing to undo -- each with the bounded loss and with the
    bounds switched off (and naive cross-entropy for reference). After each pass: prediction bias and
    log loss on the test impressions, and the largest logit.
    """
    import numpy as np

    from trainer import metrics
    from trainer.fit import setup_determinism, targets
    from trainer.pipeline import batch_rows
    from trainer.samples import SampleTable, read_samples
    from trainer.state import TrainerState

    directory = Path(args.workdir) / f"stability-seed{seed}"
    split = prepare_data(args, seed, directory, ["--rate", str(STABILITY_RATE)], by="emit")
    with open(split.train, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    streams = {
        "complete stream": SampleTable(read_samples([split.train])[0]),
        "90% of NEGATIVEs dropped": SampleTable(
            read_samples([write_jsonl(directory / "sampled.jsonl", drop_negatives(rows, 0.9, seed))])[0]
        ),
    }
    test = SampleTable(read_samples([split.test])[0])
    variants: dict[str, dict[str, Any]] = {
        "pu": {"name": "pu"},
        "pu without bounds": {"name": "pu", "pu_logit_bound": 1e9, "pu_nnpu": False},
        "naive (reference)": {"name": "naive"},
    }
    report = []
    for stream_name, train in streams.items():
        for name, loss_overrides in variants.items():
            config = base.model_copy(
                update={
                    "loss": base.loss.model_copy(update=loss_overrides),
                    "fit": base.fit.model_copy(update={"order": "stream"}),
                }
            )
            setup_determinism(seed)
            state = TrainerState.create(config, train)
            prepared, test_prepared = state.prepare(train), state.prepare(test)
            for done in range(1, args.stability_passes + 1):
                for batch in batch_rows(train, config.fit.batch_size, "stream", seed, done):
                    state.train_on_batch(state.encode(prepared, batch), targets(train, batch, None))
                logits = state.logits(state.encoder.peek(test_prepared, np.arange(len(test))))
                scores = metrics.evaluate(test.labels, 1.0 / (1.0 + np.exp(-logits)))
                report.append(
                    {
                        "variant": f"{name}, {stream_name}",
                        "pass": done,
                        "prediction_bias": scores["prediction_bias"],
                        "logloss": scores["logloss"],
                        "max_logit": float(np.max(logits)),
                    }
                )
            last = report[-1]
            _say(
                f"stability {last['variant']}: pass {done} bias {last['prediction_bias']:.3f} "
                f"log loss {last['logloss']:.4f} max logit {last['max_logit']:.1f}"
            )
    return report


def stability_markdown(report: list[dict[str, Any]], passes: int) -> str:
    shown = sorted({p for p in (1, 2, passes // 2, passes) if 1 <= p <= passes})
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


def _fmt(values: list[float | None], digits: int, spread: str = "std") -> str:
    """Mean over seeds, with the standard deviation (``std``) or the range (``range``)."""
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    mean = statistics.fmean(present)
    if len(present) == 1:
        return f"{mean:.{digits}f}"
    if spread == "range":
        return f"{mean:.{digits}f} ({min(present):.{digits}f} … {max(present):.{digits}f})"
    return f"{mean:.{digits}f} ± {statistics.stdev(present):.{digits}f}"


def markdown(
    per_seed: list[dict[str, dict[str, Any]]], names: list[str], args: argparse.Namespace, stats: list[dict[str, Any]]
) -> str:
    lines = [
        "| loss | AUC | log loss | prediction bias | \\|bias - 1\\| | R-AUC | R-NLL |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    fixed = {"naive": "0", ORACLE: "1"}
    for name in names:
        rows = [r[name] for r in per_seed]
        rel = [relative(r, name) for r in per_seed] if name not in fixed else []
        label = "oracle (naive on true labels)" if name == ORACLE else name
        r_auc = fixed.get(name) or _fmt([x[0] for x in rel], 2, "range")
        r_nll = fixed.get(name) or _fmt([x[1] for x in rel], 2, "range")
        lines.append(
            f"| {label} | {_fmt([r['auc'] for r in rows], 4)} | {_fmt([r['logloss'] for r in rows], 5)} | "
            f"{_fmt([r['prediction_bias'] for r in rows], 4)} | "
            f"{_fmt([abs(r['prediction_bias'] - 1) for r in rows], 4)} | {r_auc} | {r_nll} |"
        )
    checks = [pu_check(r) for r in per_seed] if "pu" in names and "naive" in names else []
    auc_gap = statistics.fmean(r[ORACLE]["auc"] - r["naive"]["auc"] for r in per_seed)
    nll_gap = statistics.fmean(r["naive"]["logloss"] - r[ORACLE]["logloss"] for r in per_seed)
    lines.append("")
    lines.append(
        f"Seeds {', '.join(str(s) for s in args.seeds)}; {args.impressions} impressions each "
        f"(`jobs.generate` {_generator_flags(args)}), joined by `replay --window 10m --horizon 24h`; "
        f"train on the first {100 * (1 - args.test_fraction):.0f}% of impressions "
        f"(stream: ~{statistics.fmean(s['train_samples'] for s in stats):.0f} samples, "
        f"{statistics.fmean(s['train_late_positives'] for s in stats):.0f} LATE_POSITIVE; observed CTR "
        f"{statistics.fmean(s['train_observed_ctr'] for s in stats):.4f}, true "
        f"{statistics.fmean(s['train_true_ctr'] for s in stats):.4f}), evaluate on the last "
        f"{100 * args.test_fraction:.0f}% with their true labels; {args.epochs} epochs. Metrics: mean ± standard "
        "deviation over seeds (the spread is mostly between the seeds' datasets); R-AUC and R-NLL: mean "
        f"(min … max) of the per-seed values. The naive-to-oracle gap is {auc_gap:+.4f} AUC and "
        f"{nll_gap:.5f} log loss on average: R-AUC divides by a gap within the noise of training, R-NLL "
        "by a measurable one."
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


NOTES = """\
How to read it:

- `pu`: offline, a NEGATIVE and its LATE_POSITIVE share a batch (batches are cut by impression), so
  PU's step is the step on the true label. What remains between `pu` and the oracle are the clicks that
  never reach the stream (after the 24 h horizon: 2% of clicks with the generator's default
  `--beyond-horizon-fraction 0.02`): they are negatives to every loss but the oracle, which puts `pu`'s
  prediction bias at about 0.98 x the oracle's.
- `fnw` and `fnc` are derived for a zero window (every positive first seen as a negative); with a
  10-minute window most positives never were negatives, so both over-correct (bias above 1). `fnc` only
  rescales the naive model's output, so its AUC is naive's.
- `esdfm`: the f_dp and f_rn heads read the main model's last hidden layer (stop-gradient, as separate
  models would) and are trained on the stream itself: f_dp from "is this sample a LATE_POSITIVE", f_rn
  from NEGATIVE vs LATE_POSITIVE samples, each turned into the rate ES-DFM needs by the stream's
  composition (see `trainer/losses/esdfm.py`). It corrects part of the bias.
- The oracle's own bias is not exactly 1 because the later impressions' click rate differs a little
  from the earlier ones' (sampling); every model is fitted to the earlier ones.
- Every model ends with a full-batch refit of its global bias under its own loss (the EMA-averaged
  deep weights swapped in first), so the bias column measures each loss, not SGD noise.
- With the generator's defaults (`--ctr 0.05 --late-fraction 0.1`) naive is only ~2-3% low and the
  naive-to-oracle log-loss gap is below the noise of training: no loss can be told apart there.
"""


def _generator_flags(args: argparse.Namespace) -> str:
    flags = [
        f"--{flag.replace('_', '-')} {getattr(args, flag)}"
        for flag in ("ctr", "late_fraction", "beyond_horizon_fraction", "users", "items")
        if getattr(args, flag) is not None
    ]
    return " ".join(flags) if flags else "defaults"


def _machine() -> str:
    from trainer.fit import choose_device

    return f"{os.cpu_count()} CPU cores, device {choose_device()[1]}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--impressions", type=int, default=50_000)
    # A stream where late labels matter (with the generator's defaults, 5% CTR and 10% of clicks late,
    # naive is within the noise of the oracle).
    p.add_argument("--ctr", type=float, default=0.1, help="jobs.generate --ctr (default 0.1)")
    p.add_argument("--late-fraction", type=float, default=0.5, help="jobs.generate --late-fraction (default 0.5)")
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
                f"\n\nLong-stream stability (seed {args.seeds[0]}; the same generator flags plus "
                f"`--rate {STABILITY_RATE}`, so that the impressions span two days and late positives arrive "
                "among newer impressions; training stream: the samples emitted before the test impressions "
                "begin): PU trained in stream order, as the sidecar consumes it, for "
                f"{args.stability_passes} passes; on the complete stream, and with 90% of its NEGATIVEs dropped "
                "(negative sampling without reweighting, or lost negatives: most LATE_POSITIVE undo terms then "
                "have nothing to undo; the bias is far from 1 there for every loss, the point is whether the "
                "logits stay finite). Naive cross-entropy on the same streams for reference. Test prediction bias, "
                "log loss and largest test logit after each pass:\n\n"
                + stability_markdown(stable, args.stability_passes)
            )
    except TrainerError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print(report)
    if args.out:
        command = "python -m trainer.bench " + " ".join(argv if argv is not None else sys.argv[1:])
        args.out.write_text(
            "# Trainer: delayed-feedback benchmark\n\n"
            "Events with known truth from `jobs.generate`, joined into samples by `jobs.sample_join replay`; "
            "one model per `--loss` fitted on the stream of the earlier impressions, plus an oracle (`naive` on "
            "the same impressions with their true labels); all evaluated on the later impressions with their "
            "true labels. R-AUC and R-NLL are the share of the naive-to-oracle gap a loss closes (ES-DFM, "
            "Yang et al. 2021, Table 1).\n\n"
            f"Produced by `.venv/trainer/bin/{command}` on {_machine()}.\n\n"
            f"{report}\n\n{NOTES}",
            encoding="utf-8",
        )
    (Path(args.workdir) / "results.json").write_text(json.dumps(per_seed, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
