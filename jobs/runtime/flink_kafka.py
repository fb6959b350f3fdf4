"""Sources and sinks of the streaming PyFlink job, through Flink's Table API connectors.

The Kafka side uses the official connector (``flink-sql-connector-kafka``, a jar that is not on
these machines: see :mod:`jobs.runtime.flink_job`). It is reached through the Table API rather than
PyFlink's DataStream ``KafkaSource``/``KafkaSink`` wrappers because those only expose record values:
the dead letter needs each input record's key, partition and offset (docs/wire-format.md), and Kafka
headers on output, which the Table connector gives as metadata columns. Underneath it is the same
``KafkaSource``/``KafkaSink``.

Both directions are plain DataStreams in between, so the job graph never sees the connector:

* a source gives rows ``(topic, partition, offset, key, value)`` (``KAFKA_IN_TYPE``);
* the sinks take rows ``(topic, key, value, headers)`` (``KAFKA_OUT_TYPE``), routed by topic.

:class:`KafkaTables` builds the Kafka DDL; :class:`FileTables` builds the same tables on the
``filesystem`` connector with the ``json`` format (bytes as base64), which is what the tests run:
the same conversion code, the same routing, only the connector options differ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs.config import SampleJoinConfig

SOURCE_TABLE = "sj_events"
OUTPUT_VIEW = "sj_output"

# Client settings we set; the config's kafka.consumer / kafka.producer win (passed as properties.*,
# to the Java client: librdkafka-only names among them are ignored by it, with a warning).
SOURCE_PROPERTIES = {"auto.offset.reset": "earliest"}
SINK_PROPERTIES = {"enable.idempotence": "true", "acks": "all", "linger.ms": "5"}


def _quote(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _with(options: Mapping[str, object]) -> str:
    return ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())


def sink_table_name(topic: str) -> str:
    return "sj_out_" + re.sub(r"[^A-Za-z0-9_]", "_", topic)


class KafkaTables:
    """DDL of the Kafka source (three event topics) and of one sink table per output topic."""

    def __init__(self, config: SampleJoinConfig) -> None:
        self.config = config

    def _properties(self, ours: Mapping[str, str], extra: Mapping[str, Any]) -> dict[str, str]:
        props = {**ours, **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in extra.items()}}
        props.pop("bootstrap.servers", None)
        props.pop("group.id", None)
        return {f"properties.{k}": v for k, v in props.items()}

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
            "scan.topic-partition-discovery.interval": "1 min",
            "key.format": "raw",
            "key.fields": "key",
            "value.format": "raw",
            "value.fields-include": "EXCEPT_KEY",
            **self._properties(SOURCE_PROPERTIES, kafka.consumer),
        }
        return (
            f"CREATE TEMPORARY TABLE {SOURCE_TABLE} (\n"
            "  `key` BYTES,\n"
            "  `value` BYTES,\n"
            "  `src_topic` STRING METADATA FROM 'topic' VIRTUAL,\n"
            "  `src_partition` INT METADATA FROM 'partition' VIRTUAL,\n"
            "  `src_offset` BIGINT METADATA FROM 'offset' VIRTUAL\n"
            f") WITH (\n  {_with(options)}\n)"
        )

    def source_query(self) -> str:
        return (
            "SELECT `src_topic` AS `topic`, `src_partition` AS `partition`, `src_offset` AS `offset`, "
            f"`key`, `value` FROM {SOURCE_TABLE}"
        )

    def sink_ddl(self, topic: str, headers: bool) -> str:
        kafka = self.config.kafka
        options = {
            "connector": "kafka",
            "topic": topic,
            "properties.bootstrap.servers": kafka.bootstrap_servers,
            "key.format": "raw",
            "key.fields": "key",
            "value.format": "raw",
            "value.fields-include": "EXCEPT_KEY",
            # at-least-once (docs/guarantees.md); the trainer dedups on sample_id. 'exactly-once' needs a real
            # Kafka with transactions and a transactional.id prefix (set sink.delivery-guarantee and
            # sink.transactional-id-prefix through kafka.producer if you want it).
            "sink.delivery-guarantee": "at-least-once",
            **self._properties(SINK_PROPERTIES, kafka.producer),
        }
        for key in ("sink.delivery-guarantee", "sink.transactional-id-prefix"):
            if f"properties.{key}" in options:
                options[key] = options.pop(f"properties.{key}")
        columns = "  `key` BYTES,\n  `value` BYTES" + (",\n  `headers` MAP<STRING, BYTES> METADATA" if headers else "")
        return f"CREATE TEMPORARY TABLE {sink_table_name(topic)} (\n{columns}\n) WITH (\n  {_with(options)}\n)"


class FileTables:
    """The same tables on the filesystem connector (JSON lines, bytes base64): tests and demos.

    The source reads ``source_path`` (a file or a directory of JSON lines with the fields topic,
    partition, offset, key, value); each sink writes a directory ``sink_dir/<topic>/``.
    """

    def __init__(self, source_path: Path, sink_dir: Path) -> None:
        self.source_path = Path(source_path)
        self.sink_dir = Path(sink_dir)

    def source_ddl(self) -> str:
        options = {"connector": "filesystem", "path": self.source_path.resolve().as_uri(), "format": "json"}
        return (
            f"CREATE TEMPORARY TABLE {SOURCE_TABLE} (\n"
            "  `topic` STRING,\n  `partition` INT,\n  `offset` BIGINT,\n  `key` BYTES,\n  `value` BYTES\n"
            f") WITH (\n  {_with(options)}\n)"
        )

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
