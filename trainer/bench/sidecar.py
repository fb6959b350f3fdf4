"""Benchmark: the sidecar's training throughput from Kafka beside the same model fed from memory.

    python -m trainer.bench.sidecar [--samples 20000] [--batch-size 256] [--partitions 1] [--json OUT]

Both sides train the same model config on the same samples, one pass, in one run:

* **kafka**: the sidecar's loop as `trainer run` runs it (consume, Avro decode through the schemas
  codec, contract validation, dedup, batching, feature encoding, progressive scoring, the train
  step), with exports and checkpoints pushed out of the measured span; samples/s from the end of
  the first batch (which traces the train step) to the end of the last.
* **memory**: the same batches, encoded beforehand, with the same targets (fit's, event times
  included, which feed the delayed-feedback estimate), fed to ``TrainerState.train_on_batch`` (the
  first one, which traces the step, not measured).

``--partitions``: the samples topic's partitions (keyed by impression, as the join writes it); with
more than one, the sidecar trains them in emit-time order (``sidecar.order``), and the ratio includes
what that costs.

``--samples`` is rounded down to whole batches: a last, partial batch would close only after the
sidecar's ``batch.max_wait`` with nothing more to read, a wait for data that is no training cost.

Each side runs ``--rounds`` times, alternating, and the best run of each counts (the machines these
run on are shared). The ratio kafka / memory is reported against the target 0.8. A broker and a redis-server are started
on free loopback ports unless ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` name running ones.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from common.cli import Parser

TARGET = 0.8


def synthetic_samples(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Valid Sample records (POSITIVE/NEGATIVE) from a small logistic click model."""
    rng = random.Random(seed)
    users, items = 2000, 500
    ub = [rng.gauss(0, 0.7) for _ in range(users)]
    ib = [rng.gauss(0, 0.7) for _ in range(items)]
    out = []
    for i in range(n):
        u, v, pos = rng.randrange(users), rng.randrange(items), rng.randrange(5)
        clicked = rng.random() < 1 / (1 + math.exp(-(-1.5 + ub[u] + ib[v] - 0.2 * pos)))
        t = 1_700_000_000_000 + i * 100
        attribution = "POSITIVE" if clicked else "NEGATIVE"
        out.append(
            {
                "sample_id": f"i{i}:click:{attribution}",
                "task": "click",
                "request_id": f"r{i}",
                "impression_id": f"i{i}",
                "user_id": f"u{u}",
                "item_id": f"v{v}",
                "position": pos,
                "context": {"page": rng.choice(("feed", "search"))},
                "impression_time_ms": t,
                "label": int(clicked),
                "attribution": attribution,
                "label_time_ms": t + 5_000 if clicked else None,
                "delay_ms": 5_000 if clicked else None,
                "emit_time_ms": t + 5_000 if clicked else t + 600_000,
                "sparse": {"city": f"c{u % 20}"},
                "dense": {"u_ctr_7d": round(1 / (1 + math.exp(-(-1.5 + ub[u]))), 4)},
                "has_snapshot": True,
            }
        )
    return out


def _services(stack: ExitStack, workdir: Path) -> tuple[str, str]:
    from devstack.processes import free_port
    from devstack.stack import start_broker, start_redis

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = start_broker(free_port(), workdir / "broker.log")
        stack.callback(broker.stop)
        bootstrap = broker.address
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis = start_redis(free_port(), workdir / "redis.log")
        stack.callback(redis.stop)
        redis_url = redis.address
    return bootstrap, redis_url


def bench_kafka(
    records: list[dict[str, Any]], config: Any, bootstrap: str, redis_url: str, workdir: Path, partitions: int = 1
) -> float:
    from confluent_kafka import Producer

    from common.topics import create_topics
    from schemas import Codec
    from trainer.sidecar.loop import Sidecar

    task = f"bench{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {f"samples.{task}": (partitions, 0), "deadletter": (1, 0)})
    codec = Codec.default()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for r in records:
        producer.produce(f"samples.{task}", codec.encode("Sample", r), r["impression_id"].encode())
        producer.poll(0)
    producer.flush(60)
    sidecar_cfg = config.sidecar.model_copy(
        update={
            "task": task,
            "model_dir": workdir / "model",
            "kafka": config.sidecar.kafka.model_copy(update={"bootstrap_servers": bootstrap, "group_id": task}),
            "redis": config.sidecar.redis.model_copy(update={"url": redis_url, "key_prefix": task}),
            "exit_when_idle": 1_000,
        }
    )
    sidecar = Sidecar(config.model_copy(update={"sidecar": sidecar_cfg}))
    sidecar.open()
    summary = sidecar.run()
    assert summary.samples_trained == len(records) and summary.samples_per_s, summary.to_json()
    return summary.samples_per_s


def bench_memory(records: list[dict[str, Any]], config: Any) -> float:
    import numpy as np

    from trainer.fit import targets
    from trainer.samples import SampleTable, parse_sample
    from trainer.sidecar.loop import sidecar_config
    from trainer.state import TrainerState

    config = sidecar_config(config)
    size = config.sidecar.batch.size
    samples = [parse_sample(r) for r in records]
    tables = [SampleTable(samples[i : i + size]) for i in range(0, len(samples), size)]
    state = TrainerState.create(config, tables[0])
    batches = []
    for step, table in enumerate(tables):
        prepared = state.encoder.prepare(table)
        rows = np.arange(len(table))
        batches.append((state.encoder.encode(prepared, rows, step), targets(table, rows, None)))
    state.train_on_batch(*batches[0])  # trace the step outside the measurement
    started = time.perf_counter()
    for encoded, batch_targets in batches[1:]:
        state.train_on_batch(encoded, batch_targets)
    return sum(len(t["label"]) for _, t in batches[1:]) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m trainer.bench.sidecar", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each side; the best counts")
    parser.add_argument("--partitions", type=int, default=1, help="of the samples topic (more: emit-time ordering)")
    parser.add_argument("--json", metavar="OUT", help="also write the results here")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.samples < 2 * args.batch_size or args.rounds < 1 or args.partitions < 1:
        parser.error("--samples must hold at least two batches, and --rounds and --partitions be at least 1")
    from trainer.quiet import import_tensorflow

    import_tensorflow()
    from trainer.config import TrainerConfig
    from trainer.sidecar.metrics import configure_json_logging

    configure_json_logging(quiet=True)
    config = TrainerConfig.load(
        None,
        {
            "sidecar.batch.size": args.batch_size,
            "sidecar.export_interval": "1d",
            "sidecar.checkpoint.every": "1d",
            "sidecar.checkpoint.every_steps": 10**9,
            "sidecar.metrics_port": 0,
            "sidecar.tensorboard": False,
        },
    )
    records = synthetic_samples(args.samples - args.samples % args.batch_size)
    kafka_runs: list[float] = []
    memory_runs: list[float] = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sidecar-")))
        bootstrap, redis_url = _services(stack, workdir)
        for round_ in range(args.rounds):  # alternating, so that a change of load hits both sides
            memory_runs.append(bench_memory(records, config))
            kafka_runs.append(
                bench_kafka(records, config, bootstrap, redis_url, workdir / str(round_), args.partitions)
            )
    kafka, memory = max(kafka_runs), max(memory_runs)
    result = {
        "samples": len(records),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "partitions": args.partitions,
        "kafka_runs": [round(x) for x in kafka_runs],
        "memory_runs": [round(x) for x in memory_runs],
        "kafka_samples_per_s": round(kafka),
        "memory_samples_per_s": round(memory),
        "ratio": round(kafka / memory, 3),
        "target": TARGET,
        "meets_target": kafka / memory >= TARGET,
    }
    print(
        f"trainer sidecar: {result['kafka_samples_per_s']} samples/s from Kafka, "
        f"{result['memory_samples_per_s']} from memory: ratio {result['ratio']} (target >= {TARGET})"
    )
    if args.json:
        from common.output import write_atomic

        write_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
