"""`python -m infra.cat TOPIC ...`: dump topics of Avro records as JSON lines.

Reads every partition from the beginning up to the end it finds at start (a bounded snapshot, no
consumer group), decodes each value with the `schemas` codec (Avro single-object encoding; with
`--wire-format confluent`, the Confluent Schema Registry framing too) and writes the record's JSON form
(events with their "type"). Undecodable values are reported on stderr with their offsets and skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from common.cli import EXIT_FAILED, EXIT_USAGE, Parser, fail
from common.defaults import LOCAL_KAFKA_BOOTSTRAP, kafka_bootstrap_servers
from common.errors import ConfigError
from common.output import AtomicFile
from common.wire import WIRE_FORMATS, WireFormatConfig
from infra.errors import InfraError

PROG = "python -m infra.cat"


def read_topics(
    bootstrap: str, topics: Sequence[str], timeout_s: float = 10.0, client: dict[str, Any] | None = None
) -> Iterator[tuple[str, int, int, int, bytes]]:
    """Yield (topic, partition, offset, timestamp in ms, value) for every record up to each partition's end.

    The end is taken from the fetch responses (partition EOF), not from ListOffsets, which the local
    broker does not answer correctly. ``client``: further consumer settings (security, from a config).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({**(client or {}), "bootstrap.servers": bootstrap, "group.id": "infra-cat",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        pending: set[tuple[str, int]] = set()
        for topic in topics:
            if topic not in metadata.topics or metadata.topics[topic].error is not None:
                raise InfraError(f"topic {topic} does not exist on {bootstrap}")
            pending.update((topic, partition) for partition in metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(pending)])
        while pending:
            msg = consumer.poll(timeout_s)
            if msg is None:
                raise InfraError(f"no record arrived within {timeout_s:.0f} s; still waiting on {sorted(pending)}")
            topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
            error = msg.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                pending.discard((topic, partition))
            elif error is not None:
                raise InfraError(f"cannot read {topic}: {error}")
            else:
                yield topic, partition, offset, int(msg.timestamp()[1]), msg.value() or b""
    finally:
        consumer.close()


def to_json(codec: Any, value: bytes) -> dict[str, Any]:
    """JSON form of one single-object-encoded value (events keep their "type" discriminator)."""
    from schemas.json_forms import EVENT_TYPE_OF, avro_to_event_json, from_avro

    name, record = codec.decode(value)
    return avro_to_event_json(name, record) if name in EVENT_TYPE_OF else from_avro(name, record)


def dump(
    bootstrap: str,
    topics: Sequence[str],
    out: IO[bytes],
    wire: WireFormatConfig | None = None,
    client: dict[str, Any] | None = None,
) -> tuple[int, int]:
    """Write the topics' records as JSON lines; returns (written, undecodable)."""
    from schemas import DecodeError, SchemaError

    try:
        codec = (wire or WireFormatConfig()).codec()
    except SchemaError as exc:  # the registry's client cannot be used
        raise InfraError(str(exc)) from exc
    written = bad = 0
    for topic, partition, offset, _, value in read_topics(bootstrap, topics, client=client):
        try:
            record = to_json(codec, value)
        except DecodeError as exc:
            bad += 1
            print(f"infra.cat: skipped {topic}[{partition}]@{offset}: {exc}", file=sys.stderr)
            continue
        out.write(orjson.dumps(record) + b"\n")
        written += 1
    return written, bad


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("topics", nargs="+", metavar="TOPIC", help="topics to dump, each from its start")
    parser.add_argument("--bootstrap-servers", default=None, metavar="HOST:PORT[,…]",
                        help=f"Kafka brokers (default: $KAFKA_BOOTSTRAP_SERVERS, else {LOCAL_KAFKA_BOOTSTRAP})")
    parser.add_argument("--config", metavar="CONFIG.yaml",
                        help="read from the Kafka cluster of this sample-join config (its brokers, security with the "
                        "secrets from the file or its environment, wire format); the flags override it (default: none)")
    parser.add_argument("--out", type=Path, metavar="FILE.jsonl",
                        help="write here (atomically) (default: none: standard output)")
    parser.add_argument("--wire-format", choices=WIRE_FORMATS, default="single_object",
                        help="confluent: read the Confluent Schema Registry framing too (needs "
                        "--schema-registry-url; basic auth from $SCHEMA_REGISTRY_BASIC_AUTH)")
    parser.add_argument("--schema-registry-url", metavar="URL",
                        help="the registry of --wire-format confluent (default: none)")
    args = parser.parse_args(argv)
    bootstrap = args.bootstrap_servers or kafka_bootstrap_servers()
    client: dict[str, Any] = {}
    try:
        wire = WireFormatConfig.from_flags(args.wire_format, args.schema_registry_url)
        if args.config is not None:
            from jobs.config import SampleJoinConfig

            kafka = SampleJoinConfig.load(args.config, {"kafka.bootstrap_servers": args.bootstrap_servers}).kafka
            client = kafka.client_settings("consumer")
            bootstrap = client.pop("bootstrap.servers")
            if args.wire_format == "single_object" and not args.schema_registry_url:
                wire = kafka.wire
    except ConfigError as exc:
        return fail(PROG, exc, EXIT_USAGE)
    try:
        if args.out:
            with AtomicFile(args.out) as out:
                written, bad = dump(bootstrap, args.topics, out.file, wire, client)
                out.commit()
        else:
            written, bad = dump(bootstrap, args.topics, sys.stdout.buffer, wire, client)
    except InfraError as exc:
        return fail(PROG, exc, EXIT_FAILED)
    print(f"infra.cat: {written} records from {', '.join(args.topics)}" + (f", {bad} undecodable" if bad else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
