"""The embedded runtime's output side: one idempotent producer for samples, unmatched labels and dead
letters, everything encoded through :class:`~jobs.runtime.kafka_io.WireFormat`.

Producing never blocks the loop until librdkafka's local queue is full; then it waits for the queue to
drain (back-pressure). Delivery errors are collected and make the next :meth:`KafkaSink.flush` fail,
so a checkpoint is never written over outputs Kafka did not take (docs/guarantees.md).
"""

from __future__ import annotations

import logging
from operator import attrgetter
from typing import Any

from confluent_kafka import Producer

from jobs.core.keyed import Outputs
from jobs.errors import JobError
from jobs.runtime.embedded.metrics import Counts
from jobs.runtime.kafka_io import WireFormat
from schemas.deadletter import deadletter_headers

log = logging.getLogger("jobs.runtime.embedded.runtime")
_task_and_attribution = attrgetter("task", "attribution")


class KafkaSink:
    def __init__(
        self,
        settings: dict[str, Any],
        wire: WireFormat,
        sample_topics: dict[str, str],
        unmatched_topic: str,
        deadletter_topic: str,
        counts: Counts,
    ) -> None:
        self.wire = wire
        self.sample_topics = sample_topics
        self.unmatched_topic = unmatched_topic
        self.deadletter_topic = deadletter_topic
        self.counts = counts
        self.delivery_errors: list[str] = []
        self.producer: Any = Producer(
            {**settings, "delivery.report.only.error": True, "on_delivery": self._on_delivery}
        )

    def emit(self, outputs: Outputs) -> None:
        """Encode and produce drained outputs of the join (samples keyed by impression_id, unmatched
        labels by request_id) and count them."""
        samples, unmatched = outputs
        if samples:
            produce, encode, topics = self.producer.produce, self.wire.encode_sample, self.sample_topics
            for sample in samples:
                value = encode(sample)
                try:
                    produce(topics[sample.task], value, sample.impression_id.encode())
                except BufferError:  # local queue full: let it drain, then retry
                    self.produce(topics[sample.task], value, sample.impression_id.encode())
            self.counts.samples_out.update(map(_task_and_attribution, samples))  # (counted in C)
        if unmatched:
            encode_unmatched = self.wire.encode_unmatched
            reasons = self.counts.unmatched
            for record in unmatched:
                self.produce(self.unmatched_topic, encode_unmatched(record), record.request_id.encode())
                reasons[record.reason] += 1

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: Any = None) -> None:
        """Produce one record, waiting while the local queue is full."""
        producer = self.producer
        while True:
            try:
                if headers is None:
                    producer.produce(topic, value, key)
                else:
                    producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:  # local queue full: let it drain
                producer.poll(0.05)

    def deadletter(self, msg: Any, reason: str) -> None:
        """An input record that cannot be joined: its key and bytes to the dead-letter topic, with why."""
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        headers = deadletter_headers(reason, topic, partition, offset)
        self.produce(self.deadletter_topic, msg.value() or b"", msg.key(), list(headers.items()))
        self.counts.deadletter[topic] += 1
        log.warning(
            "dead-lettered a record",
            extra={"source_topic": topic, "source_partition": partition, "source_offset": offset, "error": reason},
        )

    def poll(self) -> None:
        self.producer.poll(0)

    def flush(self) -> None:
        """Wait until Kafka has taken every output; raise JobError if it refused any."""
        while True:
            remaining = self.producer.flush(5.0)
            if not remaining:
                break
            log.warning("waiting for Kafka to take the outputs before checkpointing", extra={"undelivered": remaining})
        if self.delivery_errors:
            errors = self.delivery_errors
            raise JobError(
                f"Kafka did not take {len(errors)} output record(s) (first: {errors[0]}); "
                "not checkpointing: a restart re-emits them"
            )

    def close(self) -> None:
        self.producer.flush(10)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.delivery_errors.append(f"{msg.topic()}: {err.str()}")
