"""Delayed-feedback benchmark: ``python -m trainer.bench``.

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
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from trainer.config import TrainerConfig
from trainer.errors import TrainerError
from trainer.losses import LOSS_NAMES

log = logging.getLogger("trainer.bench")
ROOT = Path(__file__).resolve().parents[2]
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
    online: Path  # the samples emitted by the time the last training impression is served, in emission order
    offline: Path  # every sample of the training impressions (late positives however late)
    oracle: Path  # the training impressions, one sample each, true labels, in impression-time order
    test: Path  # the later impressions, one sample each, true labels
    stats: dict[str, Any]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
    return path


def split_samples(samples_path: Path, truth_path: Path, test_fraction: float, out_dir: Path) -> Split:
    """Split at the last training impression's time T; attach true labels to the oracle and test sets.

    The test set is the impressions after T. The online stream is what a live trainer has seen at T:
    the samples emitted by then (``emit_time_ms <= T``; the later clicks are still to come), in
    emission order. The offline set is every sample of the impressions up to T, however late.
    """
    truth = {}
    with open(truth_path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            truth[row["impression_id"]] = int(bool(row["clicked"]))
    with open(samples_path, encoding="utf-8") as fh:
        samples = [json.loads(line) for line in fh if line.strip()]
    times = sorted({s["impression_time_ms"] for s in samples})
    last = times[max(0, int(len(times) * (1.0 - test_fraction)) - 1)]
    offline = [s for s in samples if s["impression_time_ms"] <= last]
    online = sorted((s for s in samples if s["emit_time_ms"] <= last), key=lambda s: s["emit_time_ms"])

    def truly_labelled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for s in rows:
            if s["attribution"] == "LATE_POSITIVE":
                continue
            label = truth[s["impression_id"]]
            out.append({**s, "label": label, "attribution": "POSITIVE" if label else "NEGATIVE"})
        return out

    oracle = sorted(truly_labelled(offline), key=lambda s: s["impression_time_ms"])
    test = truly_labelled([s for s in samples if s["impression_time_ms"] > last])
    stats = {
        "online_samples": len(online),
        "online_late_positives": sum(s["attribution"] == "LATE_POSITIVE" for s in online),
        "offline_samples": len(offline),
        "offline_late_positives": sum(s["attribution"] == "LATE_POSITIVE" for s in offline),
        "train_impressions": len(oracle),
        "online_observed_ctr": sum(s["label"] for s in online) / max(1, len(online)),
        "train_true_ctr": sum(s["label"] for s in oracle) / max(1, len(oracle)),
        "test_impressions": len(test),
        "test_true_ctr": sum(s["label"] for s in test) / max(1, len(test)),
    }
    return Split(
        write_jsonl(out_dir / "online.jsonl", online),
        write_jsonl(out_dir / "offline.jsonl", offline),
        write_jsonl(out_dir / "oracle.jsonl", oracle),
        write_jsonl(out_dir / "test.jsonl", test),
        stats,
    )


def prepare_data(args: argparse.Namespace, seed: int, directory: Path, rate: float) -> Split:
    """Generate ``args.impressions`` at ``rate`` per second of event time, join them, split them."""
    directory.mkdir(parents=True, exist_ok=True)
    events, truth, samples = directory / "events.jsonl", directory / "truth.jsonl", directory / "samples.jsonl"
    python = str(args.jobs_python)
    generate = [python, "-m", "jobs.generate", "--out", str(events), "--truth", str(truth), "--quiet"]
    generate += ["--impressions", str(args.impressions), "--seed", str(seed), "--rate", f"{rate:.6f}"]
    for flag in GENERATOR_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            generate += [f"--{flag.replace('_', '-')}", str(value)]
    _run(generate)
    join = [python, "-m", "jobs.sample_join", "replay", "--events", str(events), "--out", str(samples)]
    _run([*join, "--window", "10m", "--horizon", "24h", "--quiet"])
    return split_samples(samples, truth, args.test_fraction, directory)


GENERATOR_FLAGS = ("ctr", "late_fraction", "beyond_horizon_fraction", "users", "items")


def train_rate(args: argparse.Namespace) -> float:
    """Impressions per second such that the training impressions span ``--train-hours``."""
    return args.impressions * (1.0 - args.test_fraction) / (args.train_hours * 3600.0)


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


ONLINE, OFFLINE = "online", "offline"


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


def drop_negatives(rows: list[dict[str, Any]], fraction: float, seed: int) -> list[dict[str, Any]]:
    """The stream with ``fraction`` of its NEGATIVEs dropped at random (and nothing reweighted)."""
    import numpy as np

    keep = np.random.default_rng(seed).random(len(rows)) >= fraction
    return [s for s, k in zip(rows, keep, strict=True) if k or s["attribution"] != "NEGATIVE"]


STABILITY_HOURS = 72.0  # the long stream's training impressions span three days
STABILITY_POINTS = 4  # evaluations along the pass


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


def stability_markdown(report: list[dict[str, Any]]) -> str:
    hours = [STABILITY_HOURS * p / STABILITY_POINTS for p in range(1, STABILITY_POINTS + 1)]
    lines = [
        "| loss, stream | " + " | ".join(f"after {h:.0f} h: bias / log loss / max logit" for h in hours) + " |",
        "| --- |" + " --- |" * len(hours),
    ]
    for variant in dict.fromkeys(r["variant"] for r in report):
        cells = [
            f"{r['prediction_bias']:.3f} / {r['logloss']:.4f} / {r['max_logit']:.1f}"
            for r in report
            if r["variant"] == variant
        ]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def relative(results: dict[str, dict[str, Any]], loss: str) -> tuple[float | None, float | None]:
    naive, oracle, mine = results["naive"], results[ORACLE], results[loss]
    auc_gap = oracle["auc"] - naive["auc"]
    nll_gap = naive["logloss"] - oracle["logloss"]
    r_auc = (mine["auc"] - naive["auc"]) / auc_gap if abs(auc_gap) > 1e-12 else None
    r_nll = (naive["logloss"] - mine["logloss"]) / nll_gap if abs(nll_gap) > 1e-12 else None
    return r_auc, r_nll


def online_check(results: dict[str, dict[str, Any]], loss: str = "pu") -> dict[str, bool]:
    """The online acceptance check for ``loss`` against ``naive`` and the oracle (one seed)."""
    naive, mine = results["naive"], results[loss]
    _, r_nll = relative(results, loss)
    return {
        "closes_half_the_nll_gap": r_nll is not None and r_nll >= 0.5,
        "bias_within_0.9_1.1": 0.9 <= mine["prediction_bias"] <= 1.1,
        "auc_within_0.002_of_naive": mine["auc"] >= naive["auc"] - 0.002,
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


def table_markdown(per_seed: list[dict[str, dict[str, Any]]], names: list[str]) -> str:
    lines = [
        "| loss | AUC | log loss | prediction bias | R-AUC | R-NLL |",
        "| --- | --- | --- | --- | --- | --- |",
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
            f"{_fmt([r['prediction_bias'] for r in rows], 4)} | {r_auc} | {r_nll} |"
        )
    auc_gap = statistics.fmean(r[ORACLE]["auc"] - r["naive"]["auc"] for r in per_seed)
    nll_gap = statistics.fmean(r["naive"]["logloss"] - r[ORACLE]["logloss"] for r in per_seed)
    lines += ["", f"Naive-to-oracle gap: {auc_gap:+.4f} AUC, {nll_gap:.5f} log loss (mean over seeds)."]
    if "pu" in names:
        checks = [online_check(r) for r in per_seed]
        passed = ", ".join(f"{key} {sum(c[key] for c in checks)}/{len(checks)}" for key in checks[0])
        lines.append(f"Check for `pu` per seed: {passed}.")
    return "\n".join(lines)


def markdown(
    results: list[dict[str, dict[str, dict[str, Any]]]],
    names: list[str],
    args: argparse.Namespace,
    stats: list[dict[str, Any]],
) -> str:
    mean = {key: statistics.fmean(s[key] for s in stats) for key in stats[0]}
    test_hours = args.train_hours * args.test_fraction / (1.0 - args.test_fraction)
    parts = [
        f"Seeds {', '.join(str(s) for s in args.seeds)}; {args.impressions} impressions each (`jobs.generate "
        f"{_generator_flags(args)} --rate {train_rate(args):.4f}`: the training impressions span "
        f"{args.train_hours:g} h, the test impressions the next {test_hours:g} h), joined by "
        "`replay --window 10m --horizon 24h`; evaluated on the test impressions with their TRUE labels "
        f"(~{mean['test_impressions']:.0f}, CTR {mean['test_true_ctr']:.4f}). Metrics: mean ± standard deviation "
        "over seeds; R-AUC and R-NLL (share of the naive-to-oracle gap closed): mean (min … max) of the per-seed "
        "values.",
    ]
    if ONLINE in args.settings:
        parts += [
            "## Online (headline): one pass in emission order, clicks still to come",
            f"Training stream: the ~{mean['online_samples']:.0f} samples emitted by the time the last training "
            f"impression is served ({mean['online_late_positives']:.0f} LATE_POSITIVE; the later clicks have not "
            "arrived), in emission order, one pass (`fit --order stream --epochs 1`, as the sidecar trains). "
            "Oracle: naive on the training impressions with their true labels, in impression-time order, one pass.",
            table_markdown([r[ONLINE] for r in results], names),
        ]
    if OFFLINE in args.settings:
        parts += [
            "## Offline: shuffled epochs over complete labels",
            f"Training set: every sample of the training impressions (~{mean['offline_samples']:.0f}, "
            f"{mean['offline_late_positives']:.0f} LATE_POSITIVE, however late), {args.epochs} shuffled epochs "
            "(`fit` defaults: NEGATIVE and LATE_POSITIVE share a batch, EMA weights and a bias refit at the end); "
            "oracle likewise on the true labels.",
            table_markdown([r[OFFLINE] for r in results], names),
        ]
    return "\n\n".join(parts)


NOTES = """\
How to read it:

- Online, `pu` (the default) weights each live LATE_POSITIVE by 1 / F(stream age), F the share of the
  late clicks that can have arrived by then, estimated from the stream's own delays
  (`trainer/losses/pending.py`): the undo terms that arrive stand in for those still to come. The
  estimate extrapolates the delays not observable yet at the log-density of the last observed ones
  (the generator's late delays are log-uniform, which that assumption matches); once the stream is
  older than the 24 h horizon the weight is 1 and this is plain PU.
- Online nothing happens at the end of the pass (no bias refit, no swap to the averaged weights): the
  model is what the train steps made it, as in the sidecar. A batch shorter than `fit.batch_size` takes a
  proportionally shorter step (a one-sample last batch used to move the bias by 30%).
- The oracle's own bias is not 1: the test hours' click rate differs from the training hours' (sampling),
  and one pass leaves noise in the level; compare each loss's bias with the oracle's.
- `fnw` and `fnc` are derived for a zero window (every positive first seen as a negative); with a
  10-minute window they over-correct. `fnc` only rescales naive's output, so its AUC is naive's.
- `esdfm` learns its f_dp and f_rn heads from the stream itself (see `trainer/losses/esdfm.py`); online
  the late positives still to come are missing from those heads' targets too, so it corrects less.
- Online, `pu` stays slightly below 1 and below the oracle: the clicks after the 24 h horizon (2% of
  clicks here) never reach the stream, and one pass leaves a few % of noise in the level. Its AUC is
  ~0.001 below naive's (the undo steps land hours after the steps they undo).
- The wide part's FTRL learning rate is 0.05 (was 0.2): at 0.2 the level after one pass swung more
  (online `pu` bias 0.89-0.93 on the same streams).
- The stability table: no loss diverges over a three-day stream (there F reaches 1: plain PU); PU's
  bounds only matter when undo terms have nothing to undo (negatives dropped), where PU without them
  runs away. It scores raw logits, so `fnc` (a serving-time calibration) shows naive's numbers there.
- Run time: about 12 minutes on 2 shared CPU cores (3 seeds x 12 fits of ~65k samples, plus the
  stability run); `--quick` takes well under a minute.
"""


def _generator_flags(args: argparse.Namespace) -> str:
    flags = [
        f"--{flag.replace('_', '-')} {getattr(args, flag)}"
        for flag in GENERATOR_FLAGS
        if getattr(args, flag) is not None
    ]
    return " ".join(flags)


def _machine() -> str:
    from trainer.fit import choose_device

    return f"{os.cpu_count()} CPU cores, device {choose_device()[1]}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.bench", description=__doc__.split("\n\n")[0])
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
        command = "python -m trainer.bench " + " ".join(argv if argv is not None else sys.argv[1:])
        args.out.write_text(
            "# Trainer: delayed-feedback benchmark\n\n"
            "Events with known truth from `jobs.generate`, joined into samples by `jobs.sample_join replay`; one "
            "model per `--loss`, plus an oracle (`naive` on the training impressions with their true labels), all "
            "evaluated on the impressions that follow with their true labels. R-AUC and R-NLL are the share of the "
            "naive-to-oracle gap a loss closes (ES-DFM, Yang et al. 2021, Table 1).\n\n"
            f"Produced by `.venv/trainer/bin/{command}` on {_machine()}.\n\n{report}\n\n{NOTES}",
            encoding="utf-8",
        )
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    (Path(args.workdir) / "results.json").write_text(json.dumps(per_seed, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
