"""The seed models' benchmark: ``python -m trainer.bench.models`` (issue #25).

Generated events with known truth (``jobs.generate``), joined (``jobs.sample_join replay``), split at a
time T (trainer/bench/data.py); every model is fitted on the training impressions' samples (``fit``'s
defaults: shuffled epochs, the pu loss) and evaluated on the later impressions with their TRUE labels.

- Dual DNN: AUC and log loss of the teacher and the student (the served model), beside Wide & Deep;
  the weights of each (the shared embeddings counted in both); inference latency per batch of 1 and
  of 512, the networks timed in turns in one process (compiled model functions on encoded inputs),
  and the exports end to end (``serving_default`` on raw features: lookup included).
- Two tower: AUC and log loss with and without cascade distillation from the Wide & Deep export; the
  share of embedding rows pruned (rows no training sample uses, and used rows FTRL's L1 held at zero,
  told apart), the bytes saved (the table's, and the exports' ``variables/`` on disk), the pruned
  export's largest score difference from the full one; latency of ``score_items`` (one user, N items,
  the user tower once) against N ``serving_default`` calls of one row, and one call of N rows.

Prints a Markdown report; ``--json FILE`` writes the figures (``make bench`` reads them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from common.cli import Parser
from common.output import write_atomic
from trainer.bench.data import ROOT, prepare_data
from trainer.errors import TrainerError

PROG = "python -m trainer.bench.models"
BATCHES = (1, 512)


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def timed(functions: dict[str, Callable[[], Any]], calls: int, rounds: int) -> dict[str, float]:
    """Milliseconds per call of each function: the median over ``rounds`` rounds of ``calls`` calls,
    the functions taking turns within each round (so load on the machine falls on all of them)."""
    for fn in functions.values():  # trace and warm up
        fn()
    per_round: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            per_round[name].append((time.perf_counter() - started) * 1000.0 / calls)
    return {name: round(statistics.median(values), 4) for name, values in per_round.items()}


class Bench:
    def __init__(self, args: argparse.Namespace, train: Path, test: Path):
        from trainer.samples import SampleTable, read_samples

        self.args, self.train, self.test = args, train, test
        self.workdir = Path(args.workdir)
        self.test_table = SampleTable(read_samples([test])[0])
        self.train_table = SampleTable(read_samples([train])[0])

    def fit(self, name: str, **model: Any) -> tuple[Any, dict[str, Any], Path]:
        """Fit ``model.name: name`` (more model settings in ``model``, dotted); returns the trained
        state (from the fit's checkpoint), the export's evaluation on the test set, and the export."""
        from trainer.config import TrainerConfig
        from trainer.evaluate import evaluate
        from trainer.fit import fit
        from trainer.warm_start import warm_start

        overrides: dict[str, Any] = {"model.name": name, "fit.epochs": self.args.epochs, "fit.seed": self.args.seed}
        overrides.update({f"model.{key}": value for key, value in model.items()})
        config = TrainerConfig.load(None, overrides)
        tag = "-".join([name, *(k.rsplit(".", 1)[-1] for k in model)])
        started = time.monotonic()
        result = fit([self.train], config, export=self.workdir / tag, checkpoint_dir=self.workdir / f"{tag}-ckpt")
        seconds = time.monotonic() - started
        if result.export is None:
            raise TrainerError(f"fit of {tag} wrote no export")
        report = evaluate(result.export, [self.test])
        _say(f"{tag}: AUC {report['auc']:.4f}, log loss {report['logloss']:.4f} ({seconds:.0f} s)")
        state = warm_start(self.workdir / f"{tag}-ckpt", config)
        figures = {key: report[key] for key in ("auc", "logloss", "prediction_bias", "count")}
        return state, {**figures, "fit_seconds": round(seconds, 1)}, result.export

    def encoded(self, state: Any, rows: np.ndarray) -> dict[str, Any]:
        import tensorflow as tf

        batch = state.encoder.peek(state.prepare(self.test_table), rows)
        return {k: tf.constant(v) for k, v in batch.inputs().items()}

    def raw(self, state: Any, rows: np.ndarray) -> dict[str, Any]:
        import tensorflow as tf

        from trainer.features import serving_inputs

        return {k: tf.constant(v) for k, v in serving_inputs(state.spec, self.test_table, rows).items()}

    # -- the dual DNN ------------------------------------------------------------------------------

    def dual_dnn(self, wide_deep: tuple[Any, dict[str, Any], Path]) -> dict[str, Any]:
        import tensorflow as tf

        from trainer import metrics

        state, student, export = self.fit("dual_dnn")
        wd_state, _, wd_export = wide_deep
        everything = np.arange(len(self.test_table))
        teacher_logit = state.model.teacher_logit(self.encoded(state, everything)).numpy()
        teacher = metrics.evaluate(self.test_table.labels, 1.0 / (1.0 + np.exp(-teacher_logit)))
        counts = state.model.parameter_counts()
        networks = {
            "teacher": tf.function(state.model.teacher_logit),
            "student": tf.function(state.model.student_logit),
            "wide_deep": tf.function(lambda x: wd_state.model(x)["logit"]),
        }
        exports = {
            "student_export": tf.saved_model.load(str(export)).signatures["serving_default"],
            "wide_deep_export": tf.saved_model.load(str(wd_export)).signatures["serving_default"],
        }
        latency = {}
        for size in BATCHES:
            rows = np.arange(size)
            ours, theirs = self.encoded(state, rows), self.encoded(wd_state, rows)
            raw = self.raw(state, rows)
            functions: dict[str, Callable[[], Any]] = {
                "teacher": partial(networks["teacher"], ours),
                "student": partial(networks["student"], ours),
                "wide_deep": partial(networks["wide_deep"], theirs),
                **{name: partial(fn, **raw) for name, fn in exports.items()},
            }
            calls = self.args.calls if size == 1 else max(5, self.args.calls // 20)
            latency[f"batch_{size}"] = timed(functions, calls, self.args.rounds)
        teacher_total = counts["embedding"] + counts["teacher"]
        student_total = counts["embedding"] + counts["student"]
        return {
            "teacher": {k: teacher[k] for k in ("auc", "logloss", "prediction_bias")},
            "student": student,
            "auc_gap": teacher["auc"] - student["auc"],
            "parameters": {
                **counts,
                "teacher_total": teacher_total,
                "student_total": student_total,
                "student_share": student_total / teacher_total,
                "wide_deep_total": sum(int(np.prod(v.shape)) for v in wd_state.model.weights),
            },
            "latency_ms": latency,
        }

    # -- the two tower -----------------------------------------------------------------------------

    def two_tower(self, wide_deep: tuple[Any, dict[str, Any], Path]) -> dict[str, Any]:
        import tensorflow as tf

        from trainer.export import ExportedModel, export_state
        from trainer.features import signature_name
        from trainer.models.two_tower import SCORE_ITEMS

        _, wd_figures, wd_export = wide_deep
        state, plain, pruned_export = self.fit("two_tower")
        _, distilled, _ = self.fit("two_tower", **{"two_tower.distill_from": str(wd_export)})
        model = state.model
        model.prune_export = False
        full_export = export_state(state, self.workdir / "two_tower-full")
        model.prune_export = True
        p_pruned = ExportedModel(pruned_export).predict(self.test_table)
        p_full = ExportedModel(full_export).predict(self.test_table)
        # rows: which the training samples use, which are exactly zero
        table = model.embedding.embeddings.numpy()
        zero = ~np.any(table != 0, axis=1)
        ids = state.encoder.peek(state.prepare(self.train_table), np.arange(len(self.train_table))).ids
        sides = model.sides["user_base"] + model.sides["item_base"]
        used = np.zeros(len(table), bool)
        used[np.unique(ids[:, sides] + np.asarray(state.spec.base_offsets)[sides])] = True
        meta = json.loads((pruned_export / "assets.extra" / "trainer.json").read_text())["served"]

        def variable_bytes(directory: Path) -> int:
            return sum(f.stat().st_size for f in (directory / "variables").iterdir())

        # one user against N items, against N calls of one row and one call of N rows
        loaded = tf.saved_model.load(str(pruned_export))
        score_items, single = loaded.signatures[SCORE_ITEMS], loaded.signatures["serving_default"]
        items = self._distinct_items(self.args.n_items)
        user_inputs = {signature_name(f) for f in model.side_spec("user").fields}
        item_names = {signature_name(f) for f in model.side_spec("item").fields}
        first = self.raw(state, items[:1])
        batched = self.raw(state, items)
        batched = {k: (tf.repeat(first[k], len(items)) if k in user_inputs else v) for k, v in batched.items()}
        one_user = {k: (first[k] if k in user_inputs else batched[k]) for k in user_inputs | item_names}
        rows = [{k: v[i : i + 1] for k, v in batched.items()} for i in range(len(items))]
        many = score_items(**one_user)["probability"].numpy()
        singles = np.array([single(**r)["probability"].numpy()[0] for r in rows])
        latency = timed(
            {
                "score_items": lambda: score_items(**one_user),
                "single_calls": lambda: [single(**r) for r in rows],
                "one_batched_call": lambda: single(**batched),
            },
            max(3, self.args.calls // 50),
            self.args.rounds,
        )
        return {
            "plain": plain,
            "distilled": distilled,
            "wide_deep_auc": wd_figures["auc"],
            "rows": len(table),
            "rows_pruned": int(zero.sum()),
            "rows_pruned_share": float(zero.mean()),
            "rows_unused_pruned": int((zero & ~used).sum()),
            "rows_used_pruned": int((zero & used).sum()),
            "rows_used": int(used.sum()),
            "table_bytes": meta["table_bytes"],
            "pruned_table_bytes": meta["pruned_table_bytes"],
            "export_variables_bytes": {"full": variable_bytes(full_export), "pruned": variable_bytes(pruned_export)},
            "pruned_vs_full_max_abs_diff": float(np.abs(p_pruned - p_full).max()),
            "score_items_vs_single_calls_max_abs_diff": float(np.abs(many - singles).max()),
            "n_items": len(items),
            "item_inputs": sorted(item_names),
            "latency_ms": latency,
        }

    def _distinct_items(self, n: int) -> np.ndarray:
        """Rows of the test set with ``n`` distinct items (fewer when the set has fewer)."""
        seen: dict[str, int] = {}
        for i, item in enumerate(self.test_table.column("item_id").tolist()):
            seen.setdefault(item, i)
            if len(seen) == n:
                break
        return np.asarray(sorted(seen.values()), np.int64)


def markdown(result: dict[str, Any]) -> str:
    d, t = result["dual_dnn"], result["two_tower"]
    p, lat = d["parameters"], d["latency_ms"]
    lines = [
        f"Data: {result['data']}. {result['machine']}.",
        "",
        "### Dual DNN (teacher: W&D + FM + cross network; the student serves)",
        "",
        "| model | AUC | log loss | weights | ms / batch of 1 | ms / batch of 512 |",
        "|---|---|---|---|---|---|",
        f"| teacher | {d['teacher']['auc']:.4f} | {d['teacher']['logloss']:.4f} | {p['teacher_total']:,} "
        f"| {lat['batch_1']['teacher']:.3f} | {lat['batch_512']['teacher']:.3f} |",
        f"| student | {d['student']['auc']:.4f} | {d['student']['logloss']:.4f} | {p['student_total']:,} "
        f"| {lat['batch_1']['student']:.3f} | {lat['batch_512']['student']:.3f} |",
        f"| Wide & Deep (alone) | {result['wide_deep']['auc']:.4f} | {result['wide_deep']['logloss']:.4f} "
        f"| {p['wide_deep_total']:,} | {lat['batch_1']['wide_deep']:.3f} | {lat['batch_512']['wide_deep']:.3f} |",
        f"| student export (lookup included) | | | | {lat['batch_1']['student_export']:.3f} "
        f"| {lat['batch_512']['student_export']:.3f} |",
        f"| W&D export (lookup included) | | | | {lat['batch_1']['wide_deep_export']:.3f} "
        f"| {lat['batch_512']['wide_deep_export']:.3f} |",
        "",
        f"Student/teacher weights: {p['student_share']:.2f} (shared embeddings {p['embedding']:,} in both; "
        f"teacher's own {p['teacher']:,}, student's own {p['student']:,}, hint projection {p['hint']:,} for "
        f"training only). AUC gap teacher - student: {d['auc_gap']:+.4f}.",
        "",
        "### Two tower (coarse ranker)",
        "",
        "| figure | value |",
        "|---|---|",
        f"| AUC / log loss | {t['plain']['auc']:.4f} / {t['plain']['logloss']:.4f} (W&D {t['wide_deep_auc']:.4f}) |",
        f"| distilled from the W&D export | {t['distilled']['auc']:.4f} / {t['distilled']['logloss']:.4f} |",
        f"| embedding rows pruned | {t['rows_pruned']:,} of {t['rows']:,} ({t['rows_pruned_share']:.1%}): "
        f"{t['rows_unused_pruned']:,} that no training sample uses, {t['rows_used_pruned']:,} of the "
        f"{t['rows_used']:,} used |",
        f"| table bytes | {t['table_bytes']:,} -> {t['pruned_table_bytes']:,} |",
        f"| export variables/ bytes | {t['export_variables_bytes']['full']:,} -> "
        f"{t['export_variables_bytes']['pruned']:,} |",
        f"| pruned vs full export, largest score difference | {t['pruned_vs_full_max_abs_diff']:g} |",
        f"| score_items vs single calls, largest difference | {t['score_items_vs_single_calls_max_abs_diff']:g} |",
        f"| 1 user x {t['n_items']} items: score_items | {t['latency_ms']['score_items']:.3f} ms |",
        f"| {t['n_items']} serving_default calls of 1 row | {t['latency_ms']['single_calls']:.3f} ms |",
        f"| 1 serving_default call of {t['n_items']} rows | {t['latency_ms']['one_batched_call']:.3f} ms |",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small data and few timing calls (checks the chain)")
    p.add_argument("--impressions", type=int, default=40_000)
    p.add_argument("--users", type=int, default=4_000)
    p.add_argument("--items", type=int, default=1_000)
    p.add_argument("--ctr", type=float, default=0.1)
    p.add_argument("--late-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n-items", type=int, default=100, help="N of the one-user-N-items latency")
    p.add_argument("--calls", type=int, default=400, help="calls per timing round at batch 1 (fewer for larger)")
    p.add_argument("--rounds", type=int, default=5, help="timing rounds (the median is reported)")
    p.add_argument("--workdir", default=str(ROOT / ".bench" / "models"))
    p.add_argument("--jobs-python", type=Path, default=ROOT / ".venv" / "jobs" / "bin" / "python")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the figures here")
    p.add_argument("--out", type=Path, metavar="FILE.md", help="also write the Markdown report here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.impressions, args.users, args.items, args.calls, args.rounds = 6_000, 600, 200, 40, 3
    from trainer.__main__ import quiet_tensorflow
    from trainer.fit import choose_device, setup_determinism

    logging.getLogger("trainer").setLevel(logging.WARNING)
    quiet_tensorflow()
    try:
        if not args.jobs_python.exists():
            raise TrainerError(
                f"jobs venv Python not found at {args.jobs_python} (run make setup, or pass --jobs-python)"
            )
        setup_determinism(args.seed)
        workdir = Path(args.workdir)
        generator = argparse.Namespace(
            impressions=args.impressions, users=args.users, items=args.items, ctr=args.ctr,
            late_fraction=args.late_fraction, beyond_horizon_fraction=None, jobs_python=args.jobs_python,
            test_fraction=0.25,
        )
        split = prepare_data(generator, args.seed, workdir / "data", args.impressions * 0.75 / (6 * 3600.0))
        bench = Bench(args, split.offline, split.test)
        wide_deep = bench.fit("wide_deep")
        result = {
            "data": f"{args.impressions:,} impressions ({args.users:,} users, {args.items:,} items, CTR {args.ctr}, "
            f"seed {args.seed}), {split.stats['train_impressions']:,} training / {split.stats['test_impressions']:,} "
            f"test impressions, {args.epochs} shuffled epochs, pu loss",
            "machine": f"{os.cpu_count()} CPU cores, {choose_device()[1]}",
            "wide_deep": wide_deep[1],
            "dual_dnn": bench.dual_dnn(wide_deep),
            "two_tower": bench.two_tower(wide_deep),
        }
    except TrainerError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    report = markdown(result)
    print(report)
    if args.json:
        write_atomic(args.json, json.dumps(result, indent=1, default=float))
    if args.out:
        write_atomic(args.out, "# Trainer: the seed models\n\n" + report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
