"""``run --engine flink``: the streaming sample join as a PyFlink job on Kafka.

Graph::

    Kafka (events.impressions; events.feature_snapshots; events.labels)   [flink-sql-connector-kafka]
      -> DecodeKafkaRecords (schemas codec -> join-core event; undecodable -> dead-letter records)
      -> event time + watermarks (BoundedOutOfOrderness = join.out_of_orderness, idleness = join.idleness)
      -> key_by(request_id) -> JoinFunction (ValueState of RequestState bytes, event-time timers)
      -> samples.<task> (Avro Sample, key impression_id), samples.unmatched (Avro UnmatchedLabel, key
         request_id), deadletter (original key and bytes, headers error/source_*)      [Kafka, at-least-once]

Checkpointing is on (``flink.checkpoint_interval``), state in RocksDB (``flink.state_backend``); the
Kafka source commits its offsets on checkpoints and resumes from them.

Metrics: the two Python steps register Flink counters in the group ``sampleJoin`` of their operators
(events in by type, samples out by task and attribution, unmatched by reason, dead letters by source
topic, late events, pending impressions; :mod:`jobs.runtime.flink.functions`), and RocksDB's estimates
of the state's keys and bytes are on; any Flink metric reporter exposes them (docs/observability.md).

Watermarks are per Kafka partition: the source table's ``WATERMARK FOR`` (event time read from the
Avro value by the SQL function ``ODL_EVENT_TIME_MS``) is pushed into the Kafka source, which takes
the minimum over its partitions, with ``scan.watermark.idle-timeout`` = ``join.idleness``; the join
operator takes the minimum over its inputs. ``local.exit_when_idle`` (``run --exit-when-idle``)
makes the source bounded: it reads up to the end offsets found at start, and the end of input
resolves everything pending, as in the embedded runtime.

:func:`build_graph` takes the input as a DataStream and returns the output as a DataStream, so the
same graph runs with file sources and sinks in place of Kafka (tests; see
:class:`jobs.runtime.flink.kafka.FileTables`).

Submitting to a cluster: ``make flink-submit`` on the local session cluster (``devstack/flink.py``);
the image of ``infra/flink/Dockerfile`` has all of it in place::

    flink run -d -pyclientexec /opt/venv/bin/python -pyexec /opt/venv/bin/python \\
        -j /opt/flink/connectors/flink-sql-connector-kafka-5.0.0-2.2.jar \\
        -pyfs /opt/odl-loop -pym jobs.runtime.flink.job --config /opt/odl-loop/sample-join.yaml

The jars of ``.jvm/`` are added to the job as ``pipeline.jars`` in any case (shipped with it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.config import SampleJoinConfig
from jobs.errors import JobError

CONNECTOR_ENV = "FLINK_KAFKA_CONNECTOR_JAR"
CONNECTOR_VERSION = "5.0.0-2.2"  # the Flink 2.x line of the connector; built for 2.2, runs on 2.3
CONNECTOR_JAR = f"flink-sql-connector-kafka-{CONNECTOR_VERSION}.jar"
CONNECTOR_URL = (
    f"https://repo1.maven.org/maven2/org/apache/flink/flink-sql-connector-kafka/{CONNECTOR_VERSION}/{CONNECTOR_JAR}"
)
JVM_DIR = Path(__file__).resolve().parents[3] / ".jvm"
DEFAULT_CONNECTOR_JAR = JVM_DIR / "flink" / CONNECTOR_JAR  # fetched by `make setup`
UDF_JAR = JVM_DIR / "udf" / "odl-flink-udf-1.jar"  # built by `make setup` from infra/jvm/udf
UDF_ENV = "ODL_FLINK_UDF_JAR"  # where an installed copy (e.g. the Flink image) has it instead
CHECKPOINT_DIR_ENV = "FLINK_CHECKPOINT_DIR"
DEFAULT_CHECKPOINT_DIR = Path(".state") / "flink-checkpoints"  # of `run --engine flink` (MiniCluster)


class ConnectorJarMissing(JobError):
    """The Flink Kafka connector jar (or the project's SQL function jar) is not there."""


def connector_jar(config: SampleJoinConfig, environ: dict[str, str] | None = None) -> Path:
    """The Kafka connector jar: ``$FLINK_KAFKA_CONNECTOR_JAR``, else ``flink.connector_jar``, else
    the one ``make setup`` fetched into ``.jvm/flink/``."""
    env = os.environ if environ is None else environ
    value = env.get(CONNECTOR_ENV) or config.flink.connector_jar
    where = (f"run 'make setup' (fetches it into {DEFAULT_CONNECTOR_JAR.parent}) "
             f"or get {CONNECTOR_JAR} from {CONNECTOR_URL}")
    if not value:
        if DEFAULT_CONNECTOR_JAR.is_file():
            return DEFAULT_CONNECTOR_JAR
        raise ConnectorJarMissing(
            f"the Flink Kafka connector jar is not there: {where}, or set {CONNECTOR_ENV} / flink.connector_jar"
        )
    path = Path(value).expanduser()
    if not path.is_file():
        source = CONNECTOR_ENV if env.get(CONNECTOR_ENV) else "flink.connector_jar"
        raise ConnectorJarMissing(f"the Flink Kafka connector jar {path} ({source}) does not exist; {where}")
    return path.resolve()


def job_jars(config: SampleJoinConfig) -> list[Path]:
    """``pipeline.jars`` of the Kafka job: the connector and the project's SQL function."""
    udf = Path(os.environ.get(UDF_ENV) or UDF_JAR)
    if not udf.is_file():
        raise ConnectorJarMissing(f"{udf} (the job's SQL function, infra/jvm/udf) is not there; run 'make setup'")
    return [connector_jar(config), udf.resolve()]


def streaming_options(config: SampleJoinConfig) -> dict[str, str]:
    """Flink settings of the streaming job (checkpointing, state backend, watermarks)."""
    from jobs.runtime.flink.env import submitted_by_flink_cli

    options = {
        "pipeline.name": "sample-join",
        "execution.checkpointing.interval": f"{config.flink.checkpoint_interval} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",  # consistent state; the sinks are at-least-once
        "state.backend.type": config.flink.state_backend,
        "pipeline.auto-watermark-interval": "200 ms",
    }
    if config.flink.state_backend == "rocksdb":
        options["state.backend.incremental"] = "true"
        # the state's size as metrics (docs/observability.md): RocksDB's own estimates, read when reported
        options["state.backend.rocksdb.metrics.estimate-num-keys"] = "true"
        options["state.backend.rocksdb.metrics.estimate-live-data-size"] = "true"
        options["state.backend.rocksdb.metrics.column-family-as-variable"] = "true"
    checkpoint_dir = os.environ.get(CHECKPOINT_DIR_ENV)
    if checkpoint_dir:
        options["execution.checkpointing.dir"] = checkpoint_dir
    elif not submitted_by_flink_cli():  # a cluster has its own; the JobManager's memory holds 5 MB only
        options["execution.checkpointing.dir"] = DEFAULT_CHECKPOINT_DIR.resolve().as_uri()
    return options


def output_topics(config: SampleJoinConfig) -> list[str]:
    topics = config.kafka.topics
    return [*(topics.samples(t.name) for t in config.join.tasks), topics.unmatched, topics.deadletter]


def build_graph(source: Any, config: SampleJoinConfig, source_watermarks: bool = False) -> Any:
    """Decode -> watermarks -> key_by(request_id) -> join; returns the DataStream of output records.

    ``source`` is a DataStream of ``KAFKA_IN_TYPE`` rows (topic, partition, offset, key, value);
    the result is a DataStream of ``KAFKA_OUT_TYPE`` rows (topic, key, value, headers): samples and
    unmatched labels (Avro) and dead letters. ``source_watermarks``: ``source`` carries the
    watermarks already (the Kafka source's, per partition); otherwise they are assigned after decoding.
    """
    from jobs.runtime.flink.env import key_by_request
    from jobs.runtime.flink.functions import (
        BYTES,
        DEADLETTER_RECORDS,
        KAFKA_OUT_TYPE,
        PARSED_TYPE,
        DecodeKafkaRecords,
        JoinFunction,
    )

    topics = config.kafka.topics
    join = config.join
    decoded = (
        source.process(DecodeKafkaRecords(topics.deadletter), PARSED_TYPE).name("decode-events").uid("decode-events")
    )
    keyed = key_by_request(decoded, BYTES, join.out_of_orderness, join.idleness, not source_watermarks)
    joined = keyed.process(
        JoinFunction(join.model_dump(), "avro", samples_prefix=topics.samples_prefix, unmatched_topic=topics.unmatched),
        KAFKA_OUT_TYPE,
    )
    joined.name("sample-join").uid("sample-join")  # stable uid: the keyed state survives savepoints
    return joined.union(decoded.get_side_output(DEADLETTER_RECORDS))


def build_job(env: Any, config: SampleJoinConfig, tables: Any) -> None:
    """The whole job on ``env``: ``tables`` (KafkaTables or FileTables) gives its sources and sinks."""
    from pyflink.table import StreamTableEnvironment

    from jobs.runtime.flink.kafka import table_sinks, table_source

    t_env = StreamTableEnvironment.create(env)
    output = build_graph(table_source(t_env, tables), config, tables.source_watermarks)
    table_sinks(t_env, output, output_topics(config), [config.kafka.topics.deadletter], tables)


def run(config: SampleJoinConfig) -> None:
    """Run the streaming job (blocks while it runs on the local MiniCluster; under ``flink run`` it
    submits the job to the cluster). Raises ConnectorJarMissing (one line) without the connector."""
    refuse_confluent_framing(config)
    from jobs.runtime.flink.env import make_environment, one_line
    from jobs.runtime.flink.kafka import KafkaTables

    env = make_environment(config.flink.parallelism, streaming_options(config), jars=job_jars(config))
    build_job(env, config, KafkaTables(config, bounded=config.local.exit_when_idle is not None))
    publish_contract(config)
    try:
        env.execute("sample-join")
    except Exception as exc:
        raise JobError(f"the Flink job failed: {one_line(exc)}") from None


def publish_contract(config: SampleJoinConfig, timeout_s: float = 5.0) -> bool:
    """Publish the tasks' contract in ``redis`` (what the trainer checks at its start: its attribution
    horizon, its dedup), as the embedded runtime does. The job keeps no state in Redis, so a Redis it
    cannot reach is one warning line on stderr, not a failure; returns whether it was published."""
    import redis

    from common.services import one_line as service_line
    from common.task_contract import publish_task_contract

    topics = config.kafka.topics
    client = config.redis.client(socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        publish_task_contract(
            client,
            config.join.tasks,
            {t.name: topics.samples(t.name) for t in config.join.tasks},
            published_by=f"sample-join (flink, group {config.kafka.group_id})",
        )
        return True
    except redis.RedisError as exc:
        print(
            f"jobs.runtime.flink.job: warning: the task contract was not published to Redis {config.redis.url} "
            f"({service_line(exc)}): a trainer cannot check its horizon against the join's",
            file=sys.stderr,
        )
        return False
    finally:
        client.close()


def refuse_confluent_framing(config: SampleJoinConfig) -> None:
    """The job reads and writes single-object encoding only (its event-time UDF reads that header
    from the Kafka value): ``kafka.wire.format: confluent`` is refused in one line (docs/wire-format.md)."""
    if config.kafka.wire.format != "single_object":
        from common.errors import ConfigError

        raise ConfigError(
            f"kafka.wire.format is {config.kafka.wire.format}: the Flink job reads and writes Avro single-object "
            "encoding only; run the confluent framing with --engine local (docs/wire-format.md)"
        )


def build_parser() -> argparse.ArgumentParser:
    """The arguments of the job's entry point (also what a FlinkDeployment's ``job.args`` pass)."""
    parser = argparse.ArgumentParser(prog="jobs.runtime.flink.job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="sample-join config (YAML)")
    parser.add_argument("--parallelism", type=int, help="overrides flink.parallelism")
    parser.add_argument("--exit-when-idle", metavar="DURATION",
                        help="bounded: read up to the end offsets at start, resolve everything and finish")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``flink run -pym jobs.runtime.flink.job --config FILE`` (and ``python -m``)."""
    args = build_parser().parse_args(argv)
    from common.errors import CommonError

    try:
        config = SampleJoinConfig.load(
            args.config, {"flink.parallelism": args.parallelism, "local.exit_when_idle": args.exit_when_idle}
        )
        run(config)
    except (JobError, CommonError) as exc:
        print(f"jobs.runtime.flink.job: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConnectorJarMissing | CommonError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
