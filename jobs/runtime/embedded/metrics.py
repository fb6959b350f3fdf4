"""Prometheus metrics and structured (JSON-lines) logs of the embedded runtime.

The hot loop counts into plain dicts (:class:`Counts`); :meth:`RuntimeMetrics.publish` moves the
increments into the Prometheus collectors a few times a second, so a record costs no lock.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter

from common.logs import JsonFormatter
from jobs.runtime.summary import Totals


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr, unless the application configured logging already."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)


@dataclass
class Counts:
    """Increments since the last publish (plain dicts: cheap in the per-record path)."""

    events_in: Counter[str] = field(default_factory=Counter)  # topic
    samples_out: Counter[tuple[str, str]] = field(default_factory=Counter)  # (task, attribution)
    unmatched: Counter[str] = field(default_factory=Counter)  # reason
    deadletter: Counter[str] = field(default_factory=Counter)  # source topic
    ignored: Counter[str] = field(default_factory=Counter)  # label type

    def clear(self) -> None:
        for c in (self.events_in, self.samples_out, self.unmatched, self.deadletter, self.ignored):
            c.clear()


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = PromCounter("sample_join_events_in", "Input records consumed, by topic", ["topic"], registry=r)
        self.samples_out = PromCounter(
            "sample_join_samples_out", "Samples produced, by task and attribution", ["task", "attribution"], registry=r
        )
        self.unmatched = PromCounter(
            "sample_join_unmatched", "Unmatched labels produced, by reason", ["reason"], registry=r
        )
        self.deadletter = PromCounter(
            "sample_join_deadlettered", "Records sent to the dead letter, by source topic", ["source_topic"], registry=r
        )
        self.ignored = PromCounter(
            "sample_join_ignored_labels", "Labels of a type no task uses", ["label_type"], registry=r
        )
        self.watermark = Gauge(
            "sample_join_watermark_ms", "Event-time watermark of each input partition", ["partition"], registry=r
        )
        self.watermark_lag = Gauge(
            "sample_join_watermark_lag_seconds", "Wall time minus the lowest partition watermark", registry=r
        )
        self.state_keys = Gauge("sample_join_state_keys", "Requests with state in memory", registry=r)
        self.pending_impressions = Gauge("sample_join_pending_impressions", "Impressions held in state", registry=r)
        self.state_bytes = Gauge(
            "sample_join_state_bytes", "Bytes of serialized state at the last checkpoint", registry=r
        )
        self.state_bytes_per_impression = Gauge(
            "sample_join_state_bytes_per_pending_impression",
            "Serialized state bytes per pending impression (last measurement)",
            registry=r,
        )
        self.timers = Gauge("sample_join_timers_pending", "Event-time timers registered", registry=r)
        self.checkpoint_seconds = Histogram(
            "sample_join_checkpoint_duration_seconds",
            "Producer flush + Redis write of one checkpoint",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.partitions = Gauge("sample_join_assigned_partitions", "Input partition numbers owned", registry=r)
        self.lost_checkpoints = PromCounter(
            "sample_join_lost_checkpoints",
            "Partitions found without a checkpoint in Redis while the consumer group had committed offsets",
            registry=r,
        )
        self.counts = Counts()
        self.totals = Totals()
        self._server: Any = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the /metrics HTTP endpoint on ``host`` (loopback unless told otherwise); returns the port
        (useful with port 0)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def publish(self) -> None:
        c, t = self.counts, self.totals
        for topic, n in c.events_in.items():
            self.events_in.labels(topic).inc(n)
            t.events_in += n
        for (task, attribution), n in c.samples_out.items():
            self.samples_out.labels(task, attribution).inc(n)
            t.samples_out += n
            t.by_attribution[attribution] += n
        for reason, n in c.unmatched.items():
            self.unmatched.labels(reason).inc(n)
            t.unmatched += n
        for topic, n in c.deadletter.items():
            self.deadletter.labels(topic).inc(n)
            t.deadletter += n
        for label_type, n in c.ignored.items():
            self.ignored.labels(label_type).inc(n)
            t.ignored += n
        c.clear()

    def set_watermarks(self, watermarks: dict[int, int]) -> None:
        lowest = None
        for p, wm in watermarks.items():
            self.watermark.labels(str(p)).set(wm)
            if lowest is None or wm < lowest:
                lowest = wm
        if lowest is not None and lowest > 0:
            self.watermark_lag.set(max(0.0, time.time() - lowest / 1000.0))

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
