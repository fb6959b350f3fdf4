"""Single hashing, multi-hash (sum and concat) and the dynamic vocabulary at equal memory, on Zipf ID streams.

The population: ``--ids`` distinct IDs, the ID of popularity rank r seen 1 + Poisson((m - 1) N p_r)
times (p_r proportional to r^-zipf, m = ``--impressions-per-id``): every ID at least once, a few
seen millions of times. Each scheme gets the same embedding memory, ``budget`` x distinct IDs rows
of ``--dim`` values (``--budgets``): single hashing one table of them, multi-hash ``--tables``
sub-tables sharing them, the vocabulary that many slots (OOV included).

- *At scale* (count-based, the model's own hash functions on every distinct ID): the collision rate
  of single hashing and multi-hash, over distinct IDs and weighted by impressions. Collision:
  single hashing, an ID shares its bucket with another ID; multi-hash, it shares all K buckets with
  one other ID (``trainer.layers.multi_hash``).
- *Streamed*: the same construction with ``--stream-ids`` IDs (the population scaled down, the same
  budgets in rows per distinct ID), streamed in a random order. Each impression is clicked with its
  ID's propensity (logit N(logit(ctr), spread)); a small click model (the ID's field vector through
  ``trainer.layers.FieldEmbedding``, one hidden layer of 16, Adagrad) trains one pass in stream order
  and is scored on each batch before training on it (progressive AUC). The vocabulary
  (``trainer.vocab.DynamicVocab``, the trainer's default admission and eviction) collides where an
  impression is served by the shared OOV row; an ID collides when it never had a row of its own.

Prints a Markdown report and progress lines (stderr); ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Parser, fail, positive_int
from common.output import write_atomic

PROG = "python -m trainer.bench.hashing"
SCHEMES = ("single", "multi_hash_sum", "multi_hash_concat", "vocabulary")
HIDDEN_UNITS = 16
LEARNING_RATE = 0.5  # Adagrad; 0.05 learned too slowly in one pass (AUC 0.56 against 0.63 on the default stream)
INIT_ACCUMULATOR = 0.1
INIT_STDDEV = 0.01


def progress(message: str) -> None:
    print(f"[hashing] {message}", file=sys.stderr, flush=True)


# -- the population ---------------------------------------------------------------------------------


@dataclass
class Population:
    """Distinct IDs (int64, in rank order: the first is the most popular) and their impressions."""

    ids: np.ndarray
    counts: np.ndarray

    @property
    def impressions(self) -> int:
        return int(self.counts.sum())


def zipf_population(n: int, zipf: float, impressions_per_id: float, rng: np.random.Generator) -> Population:
    """``n`` distinct IDs, each seen at least once, the rest of ``impressions_per_id`` x n impressions
    spread by a Zipf law over their popularity ranks."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -zipf
    extra = rng.poisson((impressions_per_id - 1.0) * n * weights / weights.sum())
    base = int(rng.integers(0, 1 << 40))  # a different set of IDs per seed (the hashes are fixed)
    return Population(ids=base + np.arange(n, dtype=np.int64), counts=1 + extra.astype(np.int64))


def split_rows(rows: int, k: int) -> list[int]:
    """``rows`` shared by ``k`` sub-tables as evenly as possible (the total unchanged)."""
    return [rows // k + (1 if i < rows % k else 0) for i in range(k)]


def budget_rows(budget: float, distinct: int, k: int) -> int:
    rows = round(budget * distinct)
    if rows < max(2, k):
        raise ValueError(f"--budgets {budget:g} gives {rows} rows for {distinct:,} IDs: expected at least {max(2, k)}")
    return rows


# -- collisions at scale ------------------------------------------------------------------------------


def at_scale(population: Population, budgets: Sequence[float], k: int) -> list[dict[str, Any]]:
    from trainer.layers.multi_hash import multi_hash_collisions, single_hash_collisions

    out = []
    distinct = len(population.ids)
    for budget in budgets:
        rows = budget_rows(budget, distinct, k)
        started = time.monotonic()
        single = single_hash_collisions(population.ids, rows, counts=population.counts)
        tables = split_rows(rows, k)
        multi = multi_hash_collisions(population.ids, tables, counts=population.counts)
        progress(
            f"at scale, {budget:g} rows per ID ({rows:,} rows): single hashing {single.rate:.4%} of IDs, "
            f"multi-hash {tables} {multi.rate:.6%} ({time.monotonic() - started:.1f} s)"
        )
        out.append(
            {
                "budget": budget,
                "rows": rows,
                "single": {"tables": [rows], **single.to_json()},
                "multi_hash": {"tables": tables, **multi.to_json()},
            }
        )
    return out


# -- the streamed part: a click model trained one pass ---------------------------------------------


class ClickModel:
    """logit = Dense(1)(relu(Dense(16)(the ID's field vector))), trained with Adagrad (sparse rows).

    The table, its initialiser and its field layout are the trainer's :class:`FieldEmbedding`'s; the
    sub-tables are summed by the trainer's :func:`~trainer.layers.multi_hash.combine_columns`."""

    def __init__(self, tables: Sequence[int], column_groups: Sequence[int], dim: int, bias: float, seed: int):
        import keras
        import tensorflow as tf

        from trainer.layers import FieldEmbedding

        self.embedding = FieldEmbedding(
            list(tables), 0, dim, INIT_STDDEV, seed=seed, column_groups=column_groups, name="embedding"
        )
        self.embedding.build()
        self.hidden = keras.layers.Dense(
            HIDDEN_UNITS, "relu", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1), name="hidden"
        )
        self.output = keras.layers.Dense(
            1,
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2),
            bias_initializer=keras.initializers.Constant(bias),
            name="output",
        )
        self.hidden.build((None, self.embedding.width))
        self.output.build((None, HIDDEN_UNITS))
        self.table = self.embedding.embeddings.value  # the tf.Variable, for sparse updates
        self.dense_variables = [v.value for v in self.hidden.weights + self.output.weights]
        self.table_accumulator = tf.Variable(tf.fill(self.table.shape, INIT_ACCUMULATOR))
        self.dense_accumulators = [tf.Variable(tf.fill(v.shape, INIT_ACCUMULATOR)) for v in self.dense_variables]
        self._gradients = tf.function(self._gradients_of, reduce_retracing=True)
        self._apply = tf.function(self._apply_gradients, reduce_retracing=True)

    @property
    def parameters(self) -> dict[str, int]:
        embedding = int(np.prod(self.table.shape))
        return {"embedding": embedding, "total": embedding + sum(int(np.prod(v.shape)) for v in self.dense_variables)}

    def step(self, ids: Any, labels: Any) -> np.ndarray:
        """One Adagrad step on a batch; returns its probabilities before the step. (Two graphs: an
        update in the graph that read the table would copy the whole table on every step.)"""
        probability, rows, values, dense = self._gradients(ids, labels)
        self._apply(rows, values, dense)
        return np.asarray(probability)

    def _gradients_of(self, ids: Any, labels: Any) -> Any:
        import tensorflow as tf

        from trainer.layers.multi_hash import combine_columns

        with tf.GradientTape() as tape:
            # tf.gather on the variable reads the batch's rows only (the layer's ops.take reads the
            # whole table, a copy per step once a variable has had sparse updates)
            rows = ids + tf.constant(self.embedding.offsets, tf.int32)
            embedded = combine_columns(tf.gather(self.table, rows), self.embedding.column_groups)
            flat = tf.reshape(embedded, (-1, self.embedding.width))
            logit = self.output(self.hidden(flat))[:, 0]
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logit))
        gradients = tape.gradient(loss, [self.table, *self.dense_variables])
        rows, position = tf.unique(gradients[0].indices)
        values = tf.math.unsorted_segment_sum(gradients[0].values, position, tf.shape(rows)[0])
        return tf.sigmoid(logit), rows, values, gradients[1:]

    def _apply_gradients(self, rows: Any, values: Any, dense: Any) -> None:
        import tensorflow as tf

        accumulated = tf.gather(self.table_accumulator, rows) + tf.square(values)
        self.table_accumulator.scatter_update(tf.IndexedSlices(accumulated, rows))
        self.table.scatter_sub(tf.IndexedSlices(LEARNING_RATE * values / tf.sqrt(accumulated), rows))
        for variable, accumulator, gradient in zip(self.dense_variables, self.dense_accumulators, dense, strict=True):
            accumulator.assign_add(tf.square(gradient))
            variable.assign_sub(LEARNING_RATE * gradient / tf.sqrt(accumulator))

    def reset_rows(self, rows: Sequence[int], seed: int) -> None:
        """Fresh rows for reused vocabulary slots (what the trainer does on reuse)."""
        import tensorflow as tf

        index = tf.constant(list(rows), tf.int32)
        fresh = INIT_STDDEV * tf.random.stateless_normal((len(rows), self.table.shape[1]), [seed, len(rows)])
        self.table.scatter_update(tf.IndexedSlices(fresh, index))
        self.table_accumulator.scatter_update(
            tf.IndexedSlices(tf.fill((len(rows), self.table.shape[1]), INIT_ACCUMULATOR), index)
        )


def train_one_pass(
    model: ClickModel, columns: np.ndarray | None, vocab: Any, stream: np.ndarray, labels: np.ndarray, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Progressive predictions over the stream (each batch scored before its step), and for the
    vocabulary the slot each impression was served (0: the shared OOV row)."""
    import tensorflow as tf

    predictions = np.zeros(len(stream), np.float32)
    slots = np.zeros(len(stream), np.int32)
    for step, start in enumerate(range(0, len(stream), batch)):
        end = min(start + batch, len(stream))
        if vocab is not None:
            found, reused = vocab.lookup([str(x) for x in stream[start:end].tolist()], step)
            if reused:
                model.reset_rows(reused, step)
            slots[start:end] = found
            ids = found[:, None]
        else:
            assert columns is not None
            ids = columns[start:end]
        predictions[start:end] = model.step(tf.constant(ids, tf.int32), tf.constant(labels[start:end]))
    return predictions, slots


def streamed(args: argparse.Namespace, population: Population, rng: np.random.Generator) -> dict[str, Any]:
    from trainer.config import VocabConfig
    from trainer.layers.multi_hash import (
        Collisions,
        as_strings,
        bucket_collisions,
        hash_ids,
        multi_hash_ids,
    )
    from trainer.metrics import auc, logloss
    from trainer.vocab import DynamicVocab

    n = len(population.ids)
    order = rng.permutation(np.repeat(np.arange(n), population.counts))  # positions into population.ids
    stream = population.ids[order]
    propensity = 1.0 / (1.0 + np.exp(-(math.log(args.ctr / (1.0 - args.ctr)) + args.spread * rng.normal(size=n))))
    labels = (rng.random(len(stream)) < propensity[order]).astype(np.float32)
    bias = math.log(args.ctr / (1.0 - args.ctr))
    result: dict[str, Any] = {
        "ids": n,
        "impressions": len(stream),
        "clicks": int(labels.sum()),
        "oracle_auc": auc(labels, propensity[order]),
        "budgets": [],
    }
    progress(f"stream: {n:,} distinct IDs, {len(stream):,} impressions, {int(labels.sum()):,} clicks")
    strings = as_strings(population.ids)
    vocab_config = VocabConfig()
    # The trainer's eviction horizon, unless the stream is shorter: then nothing can be evicted, and
    # without it a full vocabulary does not sweep its slots and pending IDs on every refused admission
    # (the same slots, many times faster).
    steps = -(-len(stream) // args.batch)
    evict_after = vocab_config.evict_after_steps
    if evict_after is not None and steps <= evict_after:
        evict_after = None
    for budget in args.budgets:
        rows = budget_rows(budget, n, args.tables)
        tables = split_rows(rows, args.tables)
        single_buckets = hash_ids(strings, rows).numpy()[:, None]
        multi_buckets = multi_hash_ids(strings, tables).numpy()
        entry: dict[str, Any] = {"budget": budget, "rows": rows, "schemes": {}}
        for scheme in SCHEMES:
            started = time.monotonic()
            vocab = None
            if scheme == "single":
                layout, groups, buckets = [rows], [1], single_buckets
            elif scheme == "vocabulary":
                layout, groups, buckets = [rows], [1], None
                vocab = DynamicVocab(rows, vocab_config.admit_after, evict_after)
            else:
                combine = scheme.removeprefix("multi_hash_")
                layout, buckets = tables, multi_buckets
                groups = [args.tables] if combine == "sum" else [1] * args.tables
            model = ClickModel(layout, groups, args.dim, bias, args.seed)
            columns = None if buckets is None else buckets[order]
            predictions, slots = train_one_pass(model, columns, vocab, stream, labels, args.batch)
            if buckets is not None:
                found = bucket_collisions(buckets, population.counts, layout)
            else:  # an ID collides when all its impressions were served by the shared OOV row
                own_row = np.zeros(n, bool)
                own_row[order[slots > 0]] = True
                found = Collisions(
                    ids=n,
                    collided_ids=int((~own_row).sum()),
                    impressions=len(stream),
                    collided_impressions=int((slots == 0).sum()),
                )
            entry["schemes"][scheme] = {
                "tables": layout,
                **found.to_json(),
                "parameters": model.parameters,
                "auc": auc(labels, predictions),
                "logloss": logloss(labels, predictions),
                "seconds": round(time.monotonic() - started, 1),
            }
            if vocab is not None:
                entry["schemes"][scheme]["vocabulary"] = vocab.stats()
            progress(
                f"stream, {budget:g} rows per ID, {scheme}: collisions {found.rate:.4%} of IDs / "
                f"{found.weighted_rate:.4%} of impressions, AUC {entry['schemes'][scheme]['auc']:.4f} "
                f"({time.monotonic() - started:.1f} s)"
            )
        result["budgets"].append(entry)
    return result


# -- report --------------------------------------------------------------------------------------------

LABELS = {
    "single": "single hashing",
    "multi_hash_sum": "multi-hash, sum",
    "multi_hash_concat": "multi-hash, concat",
    "vocabulary": "dynamic vocabulary",
}


def _pct(value: float) -> str:
    return f"{100 * value:.4g} %"


def markdown(result: dict[str, Any]) -> str:
    setup, scale, stream = result["setup"], result["at_scale"], result["stream"]
    k = setup["tables"]
    lines = [
        f"At scale (count-based): {scale['ids']:,} distinct IDs, {scale['impressions']:,} impressions "
        f"(Zipf {setup['zipf']:g}); collided share of the distinct IDs / of the impressions.",
        "",
        f"| rows per ID | rows | single hashing | multi-hash, {k} tables |",
        "| --- | --- | --- | --- |",
    ]
    for row in scale["budgets"]:
        single, multi = row["single"], row["multi_hash"]
        lines.append(
            f"| {row['budget']:g} | {row['rows']:,} | {_pct(single['rate'])} / {_pct(single['weighted_rate'])} | "
            f"{_pct(multi['rate'])} / {_pct(multi['weighted_rate'])} |"
        )
    lines += [
        "",
        f"Streamed: {stream['ids']:,} distinct IDs, {stream['impressions']:,} impressions, {stream['clicks']:,} "
        f"clicks (CTR {setup['ctr']:g}, propensity spread {setup['spread']:g}); one pass in stream order, "
        f"batches of {setup['batch']}, embedding dim {setup['dim']}; AUC of the true propensities "
        f"{stream['oracle_auc']:.4f}.",
        "",
        "| rows per ID | scheme | tables | IDs collided | impressions collided | embedding params | params "
        "| progressive AUC | log loss |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in stream["budgets"]:
        for scheme, r in row["schemes"].items():
            tables = " + ".join(f"{t:,}" for t in r["tables"])
            lines.append(
                f"| {row['budget']:g} | {LABELS[scheme]} | {tables} | {_pct(r['rate'])} | {_pct(r['weighted_rate'])} "
                f"| {r['parameters']['embedding']:,} | {r['parameters']['total']:,} | {r['auc']:.4f} "
                f"| {r['logloss']:.5f} |"
            )
    return "\n".join(lines)


# -- the command ---------------------------------------------------------------------------------------


def _budgets(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive rows per distinct ID, comma-separated, got {text!r}")
    return values


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _at_least_one(text: str) -> float:
    value = _positive_float(text)
    if value < 1.0:
        raise argparse.ArgumentTypeError(f"expected at least 1 (every ID is seen once), got {text!r}")
    return value


def build_parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--ids", type=positive_int, default=20_000_000, help="distinct IDs at scale (count-based)")
    p.add_argument(
        "--stream-ids", type=positive_int, default=100_000, help="distinct IDs of the streamed part (trained on)"
    )
    p.add_argument("--impressions-per-id", type=_at_least_one, default=5.0, help="mean impressions per distinct ID")
    p.add_argument("--zipf", type=_positive_float, default=1.05, help="exponent of the popularity law")
    p.add_argument(
        "--budgets", type=_budgets, default=[4.0, 1.0, 0.2], help="embedding rows per distinct ID, comma-separated"
    )
    p.add_argument("--tables", type=int, choices=range(2, 9), default=2, metavar="K", help="multi-hash sub-tables")
    p.add_argument("--dim", type=positive_int, default=8, help="embedding dimension")
    p.add_argument("--batch", type=positive_int, default=256, help="impressions per training step")
    p.add_argument("--ctr", type=_unit_interval, default=0.05, help="mean click rate")
    p.add_argument("--spread", type=_positive_float, default=1.0, help="std of the per-ID click logits")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, metavar="FILE", help="write the figures here")
    p.add_argument("--out", type=Path, metavar="FILE.md", help="also write the Markdown report here")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    from trainer.__main__ import quiet_tensorflow
    from trainer.fit import setup_determinism

    quiet_tensorflow()
    setup_determinism(args.seed)
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    population = zipf_population(args.ids, args.zipf, args.impressions_per_id, rng)
    progress(f"at scale: {args.ids:,} distinct IDs, {population.impressions:,} impressions")
    budgets = at_scale(population, args.budgets, args.tables)
    scale = {"ids": args.ids, "impressions": population.impressions, "budgets": budgets}
    del population
    stream = streamed(args, zipf_population(args.stream_ids, args.zipf, args.impressions_per_id, rng), rng)
    setup = {k: v for k, v in vars(args).items() if k not in ("json", "out", "command_prog")}
    return {"setup": setup, "at_scale": scale, "stream": stream, "seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for budget in args.budgets:  # every sub-table needs a row: checked before any work
        try:
            budget_rows(budget, min(args.ids, args.stream_ids), args.tables)
        except ValueError as exc:
            return fail(PROG, exc, EXIT_USAGE)
    try:
        result = run(args)
    except (OSError, ValueError) as exc:
        return fail(PROG, exc, EXIT_FAILED)
    report = markdown(result)
    print(report)
    if args.json:
        write_atomic(args.json, json.dumps(result, indent=1))
    if args.out:
        write_atomic(args.out, report + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
