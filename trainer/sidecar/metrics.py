"""Prometheus metrics of the sidecar (``/metrics`` on ``metrics_port``), its JSON logs and its
TensorBoard summaries. What each metric means is in the README ("Trainer sidecar")."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from common.logs import JsonFormatter
from common.services import one_line


def configure_json_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("trainer", "trainer.sidecar"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler] if name == "trainer" else []
        logger.propagate = name != "trainer"
    logging.getLogger("trainer").setLevel(logging.WARNING if quiet else logging.INFO)


class SidecarMetrics:
    def __init__(self, task: str):
        self.registry = CollectorRegistry()
        r, labels = self.registry, {"task": task}

        def counter(name: str, doc: str, *extra: str) -> Counter:
            return Counter(name, doc, ["task", *extra], registry=r)

        def gauge(name: str, doc: str, *extra: str) -> Gauge:
            return Gauge(name, doc, ["task", *extra], registry=r)

        self.samples = counter("trainer_samples_trained_total", "distinct samples trained").labels(**labels)
        self.steps = counter("trainer_steps_total", "train steps (mini-batches)").labels(**labels)
        self.samples_per_s = gauge("trainer_samples_per_second", "training throughput, last reporting window").labels(
            **labels
        )
        self.lag_gauge = gauge("trainer_consumer_lag", "messages behind the end of the partition", "partition")
        self.task = task
        self.loss = gauge("trainer_loss", "training loss of the last step").labels(**labels)
        self.progressive_auc = gauge(
            "trainer_progressive_auc", "AUC of the training model on the recent samples, each scored before training"
        ).labels(**labels)
        self.progressive_bias = gauge(
            "trainer_progressive_prediction_bias", "mean prediction / mean label on the same samples"
        ).labels(**labels)
        self.progressive_logloss = gauge("trainer_progressive_logloss", "log loss on the same samples").labels(**labels)
        self.exports = counter("trainer_exports_total", "model versions exported").labels(**labels)
        self.export_failures = counter(
            "trainer_export_failures_total", "exports that failed (disk, permission)"
        ).labels(**labels)
        self.publishes = counter("trainer_publishes_total", "versions published by the gate").labels(**labels)
        self.refusals = counter("trainer_refusals_total", "versions refused by the gate").labels(**labels)
        self.order_forced = counter(
            "trainer_order_forced_total", "hand-ons in emit-time order that did not wait for every partition"
        ).labels(**labels)
        self.delta_failures = counter(
            "trainer_delta_failures_total", "delta versions refused because they do not apply"
        ).labels(**labels)
        self.rollbacks = counter("trainer_rollbacks_total", "automatic rollbacks of the current version").labels(
            **labels
        )
        self.dedup_drops = counter("trainer_dedup_drops_total", "repeated sample_ids dropped").labels(**labels)
        self.deadletters = counter("trainer_deadletters_total", "records sent to the dead-letter topic").labels(
            **labels
        )
        self.checkpoints = counter("trainer_checkpoints_total", "checkpoints written").labels(**labels)
        self.current_version = gauge("trainer_current_version", "the registry's current version").labels(**labels)
        self.served_lag_samples = gauge(
            "trainer_served_lag_samples", "distinct samples trained since the served version's export"
        ).labels(**labels)
        self.served_lag_seconds = gauge(
            "trainer_served_lag_seconds", "stream time (largest emit time seen) since the served version's export"
        ).labels(**labels)

    def lag(self, per_partition: dict[int, int]) -> None:
        for partition, value in per_partition.items():
            self.lag_gauge.labels(task=self.task, partition=str(partition)).set(value)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on ``host``:``port`` (0: any free port); returns the port bound."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)


class Summaries:
    """TensorBoard scalars under ``<model-dir>/tensorboard`` (no-op when disabled).

    TensorFlow's ``tf.summary.scalar`` lives in the ``tensorboard`` package, which TensorFlow 2.21 no
    longer installs: without it the first summary would raise mid-run. So it is looked for here, at
    start, and when it is missing the summaries are off, said in one line, and training goes on."""

    def __init__(self, directory: Path | None, log: logging.Logger | None = None):
        self._writer: Any = None
        if directory is None:
            return
        try:
            import tensorboard.summary.v2  # noqa: F401 - what tf.summary.scalar calls
        except ImportError as exc:
            (log or logging.getLogger("trainer.sidecar")).warning(
                "TensorBoard summaries are off: the tensorboard package cannot be imported (%s); install "
                "the trainer's extras (make setup, or pip install '.[trainer]'), or set sidecar.tensorboard: false",
                one_line(exc),
            )
            return
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(str(directory))

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    def scalars(self, step: int, values: dict[str, float | None]) -> None:
        if self._writer is None:
            return
        import tensorflow as tf

        with self._writer.as_default(step=step):
            for name, value in values.items():
                if value is not None:
                    tf.summary.scalar(name, value)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
