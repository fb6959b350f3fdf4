"""Benchmark on Kafka: the join engines and the Flink SQL peer on the same events in the same topics.

One generated stream is produced once (Avro, three event topics); then, each reading those topics
from the start and writing its own output topics on the same broker:

* ``flink``: the PyFlink job (``run --engine flink --exit-when-idle``: Kafka connector, per-partition
  watermarks in the source, thread mode, hashmap state) on the MiniCluster at parallelism 1 and 2;
  events/s per slot. Timing: the job's net run time (Flink's JobExecutionResult).
* ``embedded``: the embedded runtime (confluent-kafka, Avro, Redis checkpoints), bounded; timed from
  its first input record to its last one processed.
* ``peer``: Flink SQL ``LEFT JOIN ... BETWEEN`` interval join of impressions and labels (Java
  operators, parallelism 1) through the same Kafka connector, writing the impressions out to a Kafka
  topic. It joins on the record key (``request_id``: the Avro values stay opaque to Flink SQL, their
  event time is read by the project's ``ODL_EVENT_TIME_MS``) and reads impressions and labels only;
  its events/s count the records it read.

    python -m jobs.bench.kafka [--impressions 30000] [--json .bench/kafka.json]

A broker and a redis-server are started on free loopback ports unless ``KAFKA_BOOTSTRAP_SERVERS`` /
``REDIS_URL`` point elsewhere.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common.cli import Parser
from jobs.bench.embedded import embedded
from jobs.bench.stack import Topics, runtime_config, services
from jobs.config import SampleJoinConfig
from jobs.generate import GeneratorConfig, KafkaTarget
from jobs.generate import run as generate


def flink_job(config: dict[str, Any], parallelism: int) -> dict[str, Any]:
    """The streaming job, bounded, on the MiniCluster; returns its events/s (per slot too)."""
    from jobs.runtime.flink.env import make_environment
    from jobs.runtime.flink.job import build_job, job_jars, streaming_options
    from jobs.runtime.flink.kafka import KafkaTables

    data = {**config, "flink": {"parallelism": parallelism, "checkpoint_interval": "10s", "state_backend": "hashmap"},
            "kafka": {**config["kafka"], "group_id": f"bench-flink-{uuid.uuid4().hex[:8]}"}}
    cfg = SampleJoinConfig.model_validate(data)
    env = make_environment(parallelism, streaming_options(cfg), jars=job_jars(cfg))
    build_job(env, cfg, KafkaTables(cfg, bounded=True))
    started = time.perf_counter()
    result = env.execute(f"bench-flink-p{parallelism}")
    wall = time.perf_counter() - started
    return {"parallelism": parallelism, "net_seconds": result.get_net_runtime() / 1000.0,
            "execute_seconds": round(wall, 3)}


def peer(config: dict[str, Any], window_ms: int, out_of_orderness_ms: int) -> dict[str, Any]:
    """The Flink SQL interval join on the same topics, Kafka in and out, parallelism 1."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from jobs.bench.flink_sql import timed_insert
    from jobs.runtime.flink.env import sql_interval
    from jobs.runtime.flink.job import job_jars
    from jobs.runtime.flink.kafka import EVENT_TIME_CLASS, EVENT_TIME_FUNCTION, event_time_spec

    kafka, topics = config["kafka"], config["kafka"]["topics"]
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.exec.resource.default-parallelism", "1")
    conf.set("pipeline.auto-watermark-interval", "200 ms")
    conf.set("pipeline.jars", ";".join(j.as_uri() for j in job_jars(SampleJoinConfig.model_validate(config))))
    t_env.create_java_temporary_system_function(EVENT_TIME_FUNCTION, EVENT_TIME_CLASS)
    common = (f"'connector' = 'kafka', 'properties.bootstrap.servers' = '{kafka['bootstrap_servers']}', "
              "'key.format' = 'raw', 'key.fields' = 'key', 'value.format' = 'raw', "
              "'value.fields-include' = 'EXCEPT_KEY'")
    t_env.execute_sql(f"""CREATE TEMPORARY TABLE peer_in (
  `key` BYTES, `value` BYTES, `topic` STRING METADATA VIRTUAL,
  `ts` AS TO_TIMESTAMP_LTZ(COALESCE({EVENT_TIME_FUNCTION}(`value`, '{event_time_spec()}'), 0), 3),
  WATERMARK FOR `ts` AS `ts` - {sql_interval(out_of_orderness_ms)}
) WITH ({common}, 'topic' = '{topics["impressions"]};{topics["labels"]}',
  'properties.group.id' = 'bench-peer-{uuid.uuid4().hex[:8]}', 'scan.startup.mode' = 'earliest-offset',
  'scan.bounded.mode' = 'latest-offset')""")
    t_env.execute_sql(f"CREATE TEMPORARY TABLE peer_out (`key` BYTES, `value` BYTES) WITH ({common}, "
                      f"'topic' = 'bench.peer.{uuid.uuid4().hex[:8]}', 'sink.delivery-guarantee' = 'at-least-once')")
    insert = f"""INSERT INTO peer_out
SELECT i.`key`, i.`value` FROM (SELECT * FROM peer_in WHERE `topic` = '{topics["impressions"]}') AS i
LEFT JOIN (SELECT * FROM peer_in WHERE `topic` = '{topics["labels"]}') AS l
  ON i.`key` = l.`key` AND l.`ts` BETWEEN i.`ts` AND i.`ts` + {sql_interval(window_ms)}"""
    net, wall = timed_insert(t_env, insert)
    return {"parallelism": 1, "net_seconds": net, "execute_seconds": round(wall, 3)}


def main(argv: list[str] | None = None) -> int:
    from common.config import parse_duration_ms
    from common.topics import create_topics

    p = Parser(prog="python -m jobs.bench.kafka", description=__doc__.split("\n")[0])
    p.add_argument("--impressions", type=int, default=30_000)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--window", default="1m")
    p.add_argument("--horizon", default="10m")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    window_ms = parse_duration_ms(args.window)

    results: dict[str, Any] = {"impressions": args.impressions, "partitions": args.partitions}
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp_name, services(Path(tmp_name)) as (bootstrap, url):
        tmp = Path(tmp_name)
        topics = Topics(uuid.uuid4().hex[:8], args.partitions)
        create_topics(bootstrap, {t: (topics.partitions, 0) for t in topics.inputs})
        print(f"jobs.bench.kafka: writing {args.impressions} impressions to {bootstrap} ...", file=sys.stderr)
        gen = GeneratorConfig(impressions=args.impressions, seed=args.seed, window_ms=window_ms,
                              horizon_ms=parse_duration_ms(args.horizon), delay_mean_ms=window_ms // 6)
        stats = generate(gen, out=str(tmp / "events.jsonl"),
                         kafka=KafkaTarget(bootstrap, topics.impressions, topics.snapshots, topics.labels))
        events = stats.events
        peer_events = sum(n for kind, n in stats.by_type.items() if kind == "impression" or kind.startswith("label"))
        results.update(events=events, event_mix=stats.by_type)
        config = runtime_config(bootstrap, url, topics, args.window, args.horizon, "5s", exit_when_idle="1s")

        print("jobs.bench.kafka: Flink SQL interval-join peer ...", file=sys.stderr)
        results["peer"] = peer(config, window_ms, SampleJoinConfig().join.out_of_orderness)
        results["peer"]["events_per_s"] = round(peer_events / results["peer"]["net_seconds"], 1)
        for parallelism in (1, 2):
            print(f"jobs.bench.kafka: Flink job, parallelism {parallelism} ...", file=sys.stderr)
            run = flink_job(config, parallelism)
            run["events_per_s"] = round(events / run["net_seconds"], 1)
            run["events_per_s_per_slot"] = round(run["events_per_s"] / parallelism, 1)
            results[f"flink_p{parallelism}"] = run
        print("jobs.bench.kafka: embedded runtime ...", file=sys.stderr)
        emb = embedded(config)
        results["embedded"] = {k: emb[k] for k in ("events", "seconds", "events_per_s", "samples_out")}

    reference = results["peer"]["events_per_s"]
    results["ratios_to_peer"] = {
        "flink_p1_per_slot": round(results["flink_p1"]["events_per_s_per_slot"] / reference, 3),
        "flink_p2_per_slot": round(results["flink_p2"]["events_per_s_per_slot"] / reference, 3),
        "embedded": round((results["embedded"]["events_per_s"] or 0) / reference, 3),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        from common.output import write_atomic

        write_atomic(args.json, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
