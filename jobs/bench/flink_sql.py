"""The benchmark peer of docs/performance.md: a Flink SQL interval join, Java operators only, parallelism 1.

Impressions ``LEFT JOIN`` labels ``ON`` impression_id ``AND`` the label's event time ``BETWEEN`` the
impression's and the impression's + W, both read from the same events file (JSON lines through the
``filesystem`` connector; event time = ``event_time_ms``, watermark = event time - out-of-orderness)
into a ``blackhole`` sink. It is the price list for the Python engines: what Flink itself does with
the same file on one slot.

    python -m jobs.bench.flink_sql EVENTS.jsonl [--window 10m]      # prints events/s

Registered as the ``flink-sql`` contender of ``python -m jobs.bench.replay`` (and its reference).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.cli import Parser
from jobs.bench.replay import BenchContext, BenchResult, register
from jobs.runtime.flink.env import sql_interval

SOURCE = "peer_events"


def peer_statements(events: Path, window_ms: int, out_of_orderness_ms: int, label_type: str) -> list[str]:
    """The DDL and the INSERT of the peer job."""
    path = Path(events).resolve().as_uri()
    return [
        f"""CREATE TEMPORARY TABLE {SOURCE} (
  `type` STRING,
  `request_id` STRING,
  `impression_id` STRING,
  `user_id` STRING,
  `item_id` STRING,
  `label_type` STRING,
  `position` INT,
  `event_time_ms` BIGINT,
  `ts` AS TO_TIMESTAMP_LTZ(`event_time_ms`, 3),
  WATERMARK FOR `ts` AS `ts` - {sql_interval(out_of_orderness_ms)}
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json', 'json.ignore-parse-errors' = 'true')""",
        f"CREATE TEMPORARY VIEW peer_impressions AS SELECT * FROM {SOURCE} WHERE `type` = 'impression'",
        f"CREATE TEMPORARY VIEW peer_labels AS SELECT * FROM {SOURCE} "
        f"WHERE `type` = 'label' AND `label_type` = '{label_type}'",
        """CREATE TEMPORARY TABLE peer_sink (
  `impression_id` STRING, `request_id` STRING, `user_id` STRING, `item_id` STRING, `position` INT,
  `impression_time_ms` BIGINT, `label_time_ms` BIGINT, `label` INT
) WITH ('connector' = 'blackhole')""",
        f"""INSERT INTO peer_sink
SELECT i.`impression_id`, i.`request_id`, i.`user_id`, i.`item_id`, i.`position`, i.`event_time_ms`,
       l.`event_time_ms`,
       CASE WHEN l.`impression_id` IS NULL THEN 0 ELSE 1 END
FROM peer_impressions AS i
LEFT JOIN peer_labels AS l
  ON i.`impression_id` = l.`impression_id`
 AND l.`ts` BETWEEN i.`ts` AND i.`ts` + {sql_interval(window_ms)}""",
    ]


def run_peer(
    events: Path, window_ms: int = 600_000, out_of_orderness_ms: int = 5_000, label_type: str = "click"
) -> tuple[float, float]:
    """Run the peer job on ``events``; returns (net run time, wall time from submission) in seconds.

    The net run time is Flink's (JobExecutionResult): from the job's start to its end, without the
    planning, code generation and MiniCluster start-up that precede it."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from jobs.runtime.flink.env import local_python_options

    settings = EnvironmentSettings.in_streaming_mode()
    t_env = TableEnvironment.create(settings)
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.exec.resource.default-parallelism", "1")
    conf.set("pipeline.auto-watermark-interval", "200 ms")
    for key, value in local_python_options().items():  # unused by this all-Java job; harmless
        conf.set(key, value)
    *ddl, insert = peer_statements(events, window_ms, out_of_orderness_ms, label_type)
    for statement in ddl:
        t_env.execute_sql(statement)
    return timed_insert(t_env, insert)


def timed_insert(t_env: Any, insert: str) -> tuple[float, float]:
    """Run an INSERT to its end: (the job's net run time, wall time from submission) in seconds."""
    started = time.perf_counter()
    result = t_env.execute_sql(insert)
    result.wait()
    wall = time.perf_counter() - started
    client = result.get_job_client()
    net = client.get_job_execution_result().result().get_net_runtime() / 1000.0 if client is not None else wall
    return net, wall


@register(
    "flink-sql", description="peer: Flink SQL LEFT JOIN ... BETWEEN interval join (Java, p1) into blackhole"
)
def bench_flink_sql(ctx: BenchContext) -> BenchResult:
    task = ctx.join.tasks[0]
    net, wall = run_peer(ctx.events, task.window, ctx.join.out_of_orderness, task.label_type)
    detail = {"parallelism": 1, "timing": "job net run time", "submit_to_finish_seconds": round(wall, 3)}
    return BenchResult("flink-sql", ctx.events_count, net, detail)


def main(argv: Sequence[str] | None = None) -> int:
    from common.config import parse_duration_ms

    parser = Parser(
        prog="python -m jobs.bench.flink_sql", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("events", type=Path)
    parser.add_argument("--window", default="10m")
    parser.add_argument("--out-of-orderness", default="5s")
    parser.add_argument("--label-type", default="click")
    args = parser.parse_args(argv)
    with open(args.events, "rb") as f:
        count = sum(1 for line in f if line.strip())
    net, wall = run_peer(
        args.events, parse_duration_ms(args.window), parse_duration_ms(args.out_of_orderness), args.label_type
    )
    result: dict[str, Any] = {
        "events": count,
        "net_seconds": round(net, 3),
        "events_per_second": round(count / net),
        "submit_to_finish_seconds": round(wall, 3),
    }
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
