"""Sources and sinks of the streaming PyFlink job, through Flink's Table API connectors.

The Kafka side uses the official connector (``flink-sql-connector-kafka``, fetched by ``make setup``
into ``.jvm/flink/``). It is reached through the Table API rather than PyFlink's DataStream
``KafkaSource``/``KafkaSink`` wrappers because those only expose record values: the dead letter
needs each input record's key, partition and offset (docs/wire-format.md), and Kafka headers on
output, which the Table connector gives as metadata columns. Underneath it is the same
``KafkaSource``/``KafkaSink``.

Watermarks are per Kafka partition: the source table's ``WATERMARK FOR`` is pushed into the Kafka
source, on an event-time column read from the Avro value by the project's SQL function
``ODL_EVENT_TIME_MS`` (``infra/jvm/udf``, built into ``.jvm/udf/``), with
``scan.watermark.idle-timeout`` for silent partitions. A PyFlink timestamp assigner cannot run
inside the source; this can.

Both directions are plain DataStreams in between, so the job graph never sees the connector:

* a source gives rows ``(topic, partition, offset, key, value)`` (``KAFKA_IN_TYPE``);
* the sinks take rows ``(topic, key, value, headers)`` (``KAFKA_OUT_TYPE``), routed by topic.

:class:`KafkaTables` builds the Kafka DDL; :class:`FileTables` builds the same tables on the
``filesystem`` connector with the ``json`` format (bytes as base64), for graph tests without a
broker: the same conversion code, the same routing, only the connector options differ (and the
watermarks are assigned after decoding).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs.config import SampleJoinConfig
from jobs.runtime.flink.env import sql_interval

SOURCE_TABLE = "sj_events"
OUTPUT_VIEW = "sj_output"

# Client settings we set; the config's kafka.consumer / kafka.producer win (passed as properties.*,
# to the Java client: librdkafka-only names among them are ignored by it, with a warning).
SOURCE_PROPERTIES = {"auto.offset.reset": "earliest"}
SINK_PROPERTIES = {"enable.idempotence": "true", "acks": "all", "linger.ms": "5"}
# Exactly-once sink: the producer's transaction timeout must stay within the broker's
# transaction.max.timeout.ms (15 min by default; the connector would ask for 1 h).
TRANSACTION_TIMEOUT_MS = 600_000

EVENT_TIME_FUNCTION = "ODL_EVENT_TIME_MS"
EVENT_TIME_CLASS = "odl.flink.AvroEventTime"
EVENT_RECORDS = ("Impression", "FeatureSnapshot", "Label")
_PRIMITIVE_TOKENS = {"string": "s", "bytes": "s", "int": "v", "long": "v", "boolean": "b", "float": "f",
                     "double": "d", "null": "n"}


def _quote(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _with(options: Mapping[str, object]) -> str:
    return ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())


def _skip_token(avro_type: Any) -> str | None:
    """How ``ODL_EVENT_TIME_MS`` skips a field of this Avro type (None: it cannot)."""
    if isinstance(avro_type, str):
        return _PRIMITIVE_TOKENS.get(avro_type)
    if isinstance(avro_type, list):
        branches = [_skip_token(t) for t in avro_type]
        if len(branches) > 9 or any(b is None for b in branches):
            return None
        return f"U{len(branches)}" + "".join(b for b in branches if b)
    if avro_type.get("type") == "enum":
        return "v"
    if avro_type.get("type") in ("map", "array"):
        inner = _skip_token(avro_type["values" if avro_type["type"] == "map" else "items"])
        return None if inner is None else ("M" if avro_type["type"] == "map" else "A") + inner
    return _skip_token(avro_type.get("type")) if "logicalType" in avro_type else None


def event_time_spec() -> str:
    """``ODL_EVENT_TIME_MS``'s second argument: per writer fingerprint of every kept version of the
    event records, the fields to skip before ``event_time_ms`` (versions it cannot read are left out:
    their records do not move the watermark)."""
    from schemas.registry import load_schema_set

    schemas = load_schema_set()
    entries = []
    for record in EVENT_RECORDS:
        for version in schemas.record(record).all_versions:
            tokens: list[str | None] = []
            for fld in version.schema["fields"]:
                if fld["name"] == "event_time_ms":
                    if all(t is not None for t in tokens):
                        entries.append(f"{version.fingerprint_hex}:" + "".join(t for t in tokens if t))
                    break
                tokens.append(_skip_token(fld["type"]))
    return ",".join(dict.fromkeys(entries))


def sink_table_name(topic: str) -> str:
    return "sj_out_" + re.sub(r"[^A-Za-z0-9_]", "_", topic)


class KafkaTables:
    """DDL of the Kafka source (three event topics) and of one sink table per output topic.

    ``bounded``: read up to the end offsets found at start (``scan.bounded.mode=latest-offset``),
    then finish; the end of input moves the watermark to +inf, so everything pending is resolved.
    """

    source_watermarks = True

    def __init__(self, config: SampleJoinConfig, bounded: bool = False) -> None:
        self.config = config
        self.bounded = bounded

    def _properties(self, ours: Mapping[str, str], extra: Mapping[str, Any]) -> dict[str, str]:
        props = {**ours, **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in extra.items()}}
        props.pop("bootstrap.servers", None)
        props.pop("group.id", None)
        return {f"properties.{k}": v for k, v in props.items()}

    def register_functions(self, t_env: Any) -> None:
        t_env.create_java_temporary_system_function(EVENT_TIME_FUNCTION, EVENT_TIME_CLASS)

    def source_ddl(self) -> str:
        kafka = self.config.kafka
        t = kafka.topics
        options = {
            "connector": "kafka",
            "topic": ";".join([t.impressions, t.feature_snapshots, t.labels]),
            "properties.bootstrap.servers": kafka.bootstrap_servers,
            "properties.group.id": kafka.group_id,
            # resume from the committed offsets (committed on checkpoints); earliest when there are none
            "scan.startup.mode": "group-offsets",
            "scan.watermark.idle-timeout": f"{self.config.join.idleness} ms",
            "key.format": "raw",
            "key.fields": "key",
            "value.format": "raw",
            "value.fields-include": "EXCEPT_KEY",
            **self._properties(SOURCE_PROPERTIES, kafka.consumer),
        }
        if self.bounded:
            options["scan.bounded.mode"] = "latest-offset"
        else:
            options["scan.topic-partition-discovery.interval"] = "1 min"
        # Flink's BoundedOutOfOrderness: watermark = max event time - out-of-orderness - 1 ms.
        lag = sql_interval(self.config.join.out_of_orderness + 1)
        return (
            f"CREATE TEMPORARY TABLE {SOURCE_TABLE} (\n"
            "  `key` BYTES,\n"
            "  `value` BYTES,\n"
            "  `src_topic` STRING METADATA FROM 'topic' VIRTUAL,\n"
            "  `src_partition` INT METADATA FROM 'partition' VIRTUAL,\n"
            "  `src_offset` BIGINT METADATA FROM 'offset' VIRTUAL,\n"
            f"  `event_time` AS TO_TIMESTAMP_LTZ(COALESCE({EVENT_TIME_FUNCTION}(`value`, {_quote(event_time_spec())}), "
            "0), 3),\n"
            f"  WATERMARK FOR `event_time` AS `event_time` - {lag}\n"
            f") WITH (\n  {_with(options)}\n)"
        )

    def source_query(self) -> str:
        return (
            "SELECT `src_topic` AS `topic`, `src_partition` AS `partition`, `src_offset` AS `offset`, "
            f"`key`, `value` FROM {SOURCE_TABLE}"
        )

    def sink_ddl(self, topic: str, headers: bool) -> str:
        kafka = self.config.kafka
        flink = self.config.flink
        options = {
            "connector": "kafka",
            "topic": topic,
            "properties.bootstrap.servers": kafka.bootstrap_servers,
            "key.format": "raw",
            "key.fields": "key",
            "value.format": "raw",
            "value.fields-include": "EXCEPT_KEY",
            # at-least-once by default (docs/guarantees.md: the trainer dedups on sample_id)
            "sink.delivery-guarantee": flink.delivery_guarantee,
            **self._properties(SINK_PROPERTIES, kafka.producer),
        }
        if flink.delivery_guarantee == "exactly-once":
            options["sink.transactional-id-prefix"] = flink.transactional_id_prefix or f"{kafka.group_id}-{topic}"
            options.setdefault("properties.transaction.timeout.ms", str(TRANSACTION_TIMEOUT_MS))
        columns = "  `key` BYTES,\n  `value` BYTES" + (",\n  `headers` MAP<STRING, BYTES> METADATA" if headers else "")
        return f"CREATE TEMPORARY TABLE {sink_table_name(topic)} (\n{columns}\n) WITH (\n  {_with(options)}\n)"


class FileTables:
    """The same tables on the filesystem connector (JSON lines, bytes base64): tests and demos.

    The source reads ``source_path`` (a file or a directory of JSON lines with the fields topic,
    partition, offset, key, value); each sink writes a directory ``sink_dir/<topic>/``.
    ``monitor_interval_ms``: an unbounded source that picks up new files of the directory at that
    interval (a job that keeps running, e.g. to read its metrics while it runs).
    """

    source_watermarks = False

    def __init__(self, source_path: Path, sink_dir: Path, monitor_interval_ms: int | None = None) -> None:
        self.source_path = Path(source_path)
        self.sink_dir = Path(sink_dir)
        self.monitor_interval_ms = monitor_interval_ms

    def source_ddl(self) -> str:
        options = {"connector": "filesystem", "path": self.source_path.resolve().as_uri(), "format": "json"}
        if self.monitor_interval_ms is not None:
            options["source.monitor-interval"] = f"{self.monitor_interval_ms} ms"
        return (
            f"CREATE TEMPORARY TABLE {SOURCE_TABLE} (\n"
            "  `topic` STRING,\n  `partition` INT,\n  `offset` BIGINT,\n  `key` BYTES,\n  `value` BYTES\n"
            f") WITH (\n  {_with(options)}\n)"
        )

    def register_functions(self, t_env: Any) -> None:
        """Nothing to register: the file source has no event-time column."""

    def source_query(self) -> str:
        return f"SELECT `topic`, `partition`, `offset`, `key`, `value` FROM {SOURCE_TABLE}"

    def sink_path(self, topic: str) -> Path:
        return self.sink_dir / topic

    def sink_ddl(self, topic: str, headers: bool) -> str:
        options = {"connector": "filesystem", "path": self.sink_path(topic).resolve().as_uri(), "format": "json"}
        columns = "  `key` BYTES,\n  `value` BYTES" + (",\n  `headers` MAP<STRING, BYTES>" if headers else "")
        return f"CREATE TEMPORARY TABLE {sink_table_name(topic)} (\n{columns}\n) WITH (\n  {_with(options)}\n)"


Tables = KafkaTables | FileTables


def table_source(t_env: Any, tables: Tables) -> Any:
    """The input as a DataStream of ``KAFKA_IN_TYPE`` rows."""
    tables.register_functions(t_env)
    t_env.execute_sql(tables.source_ddl())
    return t_env.to_data_stream(t_env.sql_query(tables.source_query()))


def table_sinks(t_env: Any, output: Any, topics: Sequence[str], headers_topics: Sequence[str], tables: Tables) -> None:
    """Route a DataStream of ``KAFKA_OUT_TYPE`` rows to one sink table per topic.

    The inserts are attached to the stream environment: ``env.execute()`` runs them with the rest
    of the graph.
    """
    from pyflink.table import Schema

    t_env.create_temporary_view(
        OUTPUT_VIEW,
        t_env.from_data_stream(
            output,
            Schema.new_builder()
            .column("topic", "STRING")
            .column("key", "BYTES")
            .column("value", "BYTES")
            .column("headers", "MAP<STRING, BYTES>")
            .build(),
        ),
    )
    statements = t_env.create_statement_set()
    for topic in dict.fromkeys(topics):
        headers = topic in headers_topics
        t_env.execute_sql(tables.sink_ddl(topic, headers))
        columns = "`key`, `value`" + (", `headers`" if headers else "")
        statements.add_insert_sql(
            f"INSERT INTO {sink_table_name(topic)} SELECT {columns} FROM {OUTPUT_VIEW} WHERE `topic` = {_quote(topic)}"
        )
    statements.attach_as_datastream()
