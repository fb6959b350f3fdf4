"""The Python functions of the PyFlink graphs: parse/decode steps and the keyed join.

They run inside the TaskManager (thread mode: an interpreter embedded in its JVM) and are shipped
there pickled, by reference to this module. Every record crossing between Java and Python costs
far more than the join itself, so the graph has exactly two Python steps per event:

1. a parse step (:class:`ParseJsonLines` for replay, :class:`DecodeKafkaRecords` for Kafka) that
   parses each input once, validates it into a join-core event, sends bad input to a dead-letter
   side output, and emits ``((request_id, event bytes), event_time_ms)``;
2. :class:`JoinFunction`, a KeyedProcessFunction keyed by ``request_id`` that delegates every event
   and every timer to :class:`jobs.core.SampleJoin`, keeping one ValueState of the state's byte form
   (``jobs.runtime.state_bytes``) per key and registering the event-time timers each Step asks for.

Events travel between the two as a pickled plain tuple (about 5x cheaper than pickling the slots
dataclass itself).

Metrics (docs/observability.md): both steps register Flink counters in the operator's metric group
``sampleJoin`` (key/value subgroups, which Flink's Prometheus reporter turns into labels). A call
into a Flink counter crosses into the JVM, so the join counts into Python ints per record and moves
the differences into its Flink counters once a second, from a processing-time timer it registers
while counts are waiting (which also reports the last counts of a stream that went quiet).
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from pathlib import Path
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag, TimeDomain
from pyflink.datastream.functions import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.metrics import Counter as FlinkCounter
from pyflink.metrics import MetricGroup

from common.output import AtomicFile
from common.services import one_line
from jobs.core.events import (
    BadEvent,
    Event,
    FeatureSnapshot,
    Impression,
    Label,
    make_impression,
    make_label,
    make_snapshot,
)
from jobs.core.join import ATTRIBUTIONS, UNMATCHED_REASONS, Sample, SampleJoin, UnmatchedLabel
from jobs.core.keyed import KeyedRunner
from jobs.core.state import RequestState
from jobs.runtime import _json
from jobs.runtime.kafka_io import WireFormat
from jobs.runtime.replay.jsonl import deadletter_line, parse_event_line
from jobs.runtime.state_bytes import state_from_bytes, state_to_bytes
from schemas.deadletter import deadletter_headers
from schemas.records import IMPRESSION_FIELDS, LABEL_FIELDS, SNAPSHOT_FIELDS

# -- types ---------------------------------------------------------------------------------------
BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
#: what the Kafka decode step emits: ((request_id, event bytes), event_time_ms) -- flink_env.key_by_request
PARSED_TYPE = Types.TUPLE([Types.ROW([Types.STRING(), BYTES]), Types.LONG()])
#: what the replay parse step emits -- see flink_env.key_by_request_per_event
PARSED_ROW_TYPE = Types.ROW_NAMED(["request_id", "event_time_ms", "value"], [Types.STRING(), Types.LONG(), BYTES])
#: an input record of the streaming job, as the Kafka source gives it (or a test source imitates it)
KAFKA_IN_TYPE = Types.ROW_NAMED(
    ["topic", "partition", "offset", "key", "value"],
    [Types.STRING(), Types.INT(), Types.LONG(), BYTES, BYTES],
)
#: an output record of the streaming job: topic, key, value, headers (dead letters only)
KAFKA_OUT_TYPE = Types.ROW_NAMED(
    ["topic", "key", "value", "headers"],
    [Types.STRING(), BYTES, BYTES, Types.MAP(Types.STRING(), BYTES)],
)

DEADLETTER_LINES = OutputTag("deadletter", Types.STRING())
UNMATCHED_LINES = OutputTag("unmatched", Types.STRING())
DEADLETTER_RECORDS = OutputTag("deadletter-records", KAFKA_OUT_TYPE)

STATE_NAME = "request_state"
DECODED_CACHE_SIZE = 20_000  # recently written states kept decoded (per parallel instance)

# -- metrics (docs/observability.md) ---------------------------------------------------------------
METRIC_GROUP = "sampleJoin"  # the operator's subgroup holding every metric of this module
#: every metric of this module and its labels (key/value subgroups, in this order)
METRICS: dict[str, tuple[str, ...]] = {
    "eventsIn": ("type",),
    "lateEvents": ("type",),
    "samplesOut": ("task", "attribution"),
    "unmatched": ("reason",),
    "ignoredLabels": ("label_type",),
    "pendingImpressions": (),
    "deadLettered": ("source_topic",),
}
REPORT_INTERVAL_MS = 1_000  # how often the join moves its counts into Flink's counters


def prometheus_name(metric: str) -> str:
    """The name Flink's Prometheus reporter gives a metric of :data:`METRICS` (its scope, the group,
    the label keys, the name; the label values become labels, with '.' written as '_')."""
    return "_".join(["flink_taskmanager_job_task_operator", METRIC_GROUP, *METRICS[metric], metric])

# -- events as plain tuples ----------------------------------------------------------------------
_IMPRESSION, _SNAPSHOT, _LABEL = 0, 1, 2
#: the ``type`` label of eventsIn / lateEvents, by kind (the events' JSON ``type``, docs/wire-format.md)
EVENT_TYPES = ("impression", "feature_snapshot", "label")
_dumps = pickle.dumps
_loads = pickle.loads
_PROTOCOL = pickle.HIGHEST_PROTOCOL


_TUPLE_OF: dict[type, tuple[int, Callable[[Any], tuple[Any, ...]]]] = {
    Impression: (_IMPRESSION, attrgetter(*IMPRESSION_FIELDS)),
    FeatureSnapshot: (_SNAPSHOT, attrgetter(*SNAPSHOT_FIELDS)),
    Label: (_LABEL, attrgetter(*LABEL_FIELDS)),
}
_MAKE: dict[int, Callable[..., Event]] = {_IMPRESSION: make_impression, _SNAPSHOT: make_snapshot, _LABEL: make_label}


def event_to_bytes(event: Event) -> bytes:
    """An event as a pickled ``(kind, *fields in schema order)`` tuple."""
    try:
        kind, fields = _TUPLE_OF[type(event)]
    except KeyError:
        raise TypeError(f"not an event: {type(event).__name__}") from None
    return _dumps((kind, *fields(event)), _PROTOCOL)


def event_from_bytes(data: bytes) -> Event:
    t = _loads(data)
    return _MAKE[t[0]](*t[1:])


def subtask_index(runtime_context: RuntimeContext) -> int:
    """This parallel instance's index (PyFlink 2.3's own accessor calls a method Flink 2 removed)."""
    j_context = getattr(runtime_context, "_runtime_context", None)
    try:
        return int(j_context.getTaskInfo().getIndexOfThisSubtask())  # type: ignore[union-attr]
    except Exception:
        try:
            return int(runtime_context.get_index_of_this_subtask())
        except Exception:
            return os.getpid() * 1000 + id(runtime_context) % 1000


class FlinkCounters:
    """Flink counters under ``<operator>.sampleJoin[.<key>.<value>...].<name>``, created once each.

    :meth:`report` adds to each counter the difference between a running total the caller keeps in
    Python and what was reported before: one JVM call per changed counter, not one per record.
    A counter may go down (a level such as pendingImpressions): Flink's counters take negative increments.
    """

    def __init__(self, operator_group: MetricGroup) -> None:
        self.group = operator_group.add_group(METRIC_GROUP)
        self._counters: dict[tuple[str, tuple[str, ...]], FlinkCounter] = {}
        self._reported: dict[tuple[str, tuple[str, ...]], int] = {}

    def counter(self, name: str, values: tuple[str, ...] = ()) -> FlinkCounter:
        """The counter ``name`` of :data:`METRICS` with these label values."""
        key = (name, values)
        counter = self._counters.get(key)
        if counter is None:
            group = self.group
            for label, value in zip(METRICS[name], values, strict=True):
                group = group.add_group(label, value)
            counter = self._counters[key] = group.counter(name)
        return counter

    def declare(self, name: str, values: Iterable[tuple[str, ...]]) -> None:
        """Register counters up front, so that they show (at 0) before their first count."""
        for v in values:
            self.counter(name, v)

    def report(self, name: str, totals: Mapping[tuple[str, ...], int]) -> None:
        """Bring each counter of ``name`` up to its running total (keys: label values)."""
        reported = self._reported
        for values, total in totals.items():
            key = (name, values)
            delta = total - reported.get(key, 0)
            if delta:
                self.counter(name, values).inc(delta)
                reported[key] = total


def _write_stats(stats_dir: str | None, name: str, subtask: int, data: dict[str, Any]) -> None:
    """Counters of one parallel instance, read by the replay driver after the job (local only)."""
    if not stats_dir:
        return
    with AtomicFile(Path(stats_dir) / f"{name}-{subtask}.json") as f:
        f.write(json.dumps(data).encode("utf-8"))
        f.commit()


# -- parse steps ---------------------------------------------------------------------------------
class ParseJsonLines(ProcessFunction):
    """Lines of an events file (docs/wire-format.md JSON) -> parsed events (``PARSED_ROW_TYPE``); bad lines ->
    dead letter.

    Must run at parallelism 1 right behind the file source (one split per file, read in order), so
    that its line counter is the line number. Blank lines are skipped; a dead letter is
    ``{"line": N, "reason": "...", "raw": "..."}`` as in the local engine.
    """

    def __init__(self, stats_dir: str | None = None) -> None:
        self.stats_dir = stats_dir
        self.lineno = 0
        self.blank = 0
        self.deadlettered = 0
        self.events = 0
        self.subtask = 0

    def open(self, runtime_context: RuntimeContext) -> None:
        self.lineno = self.blank = self.deadlettered = self.events = 0
        self.subtask = subtask_index(runtime_context)

    def close(self) -> None:
        _write_stats(
            self.stats_dir,
            "parse",
            self.subtask,
            {"lines": self.lineno, "blank": self.blank, "deadlettered": self.deadlettered, "events": self.events},
        )

    def process_element(self, value: str, ctx: ProcessFunction.Context) -> list[Any]:
        self.lineno += 1
        try:
            event = parse_event_line(value)
        except BadEvent as exc:
            self.deadlettered += 1
            return [(DEADLETTER_LINES, deadletter_line(self.lineno, str(exc), value)[:-1].decode("utf-8"))]
        if event is None:
            self.blank += 1
            return []
        self.events += 1
        return [Row(event.request_id, event.event_time_ms, event_to_bytes(event))]


class DecodeKafkaRecords(ProcessFunction):
    """Kafka records (``KAFKA_IN_TYPE``) of the three event topics -> parsed events.

    A record that cannot be decoded (unknown fingerprint, bad body, not an event record, invalid
    event) goes to the ``DEADLETTER_RECORDS`` side output: original key and bytes, headers
    ``error``, ``source_topic``, ``source_partition``, ``source_offset`` (docs/wire-format.md).
    """

    def __init__(self, deadletter_topic: str) -> None:
        self.deadletter_topic = deadletter_topic
        self.decode: Callable[[bytes | None], Event] | None = None
        self.metrics: FlinkCounters | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self.decode = WireFormat().decode_event
        # sampleJoin.source_topic.<topic>.deadLettered, counted per dead letter (they are rare)
        self.metrics = FlinkCounters(runtime_context.get_metrics_group())

    def process_element(self, value: Row, ctx: ProcessFunction.Context) -> list[Any]:
        topic, partition, offset, key, data = value[0], value[1], value[2], value[3], value[4]
        try:
            event = self.decode(data)  # type: ignore[misc]
        except Exception as exc:  # undecodable or invalid: dead letter, and go on
            headers = deadletter_headers(one_line(exc), topic, partition, offset)
            self.metrics.counter("deadLettered", (topic,)).inc()  # type: ignore[union-attr]
            return [(DEADLETTER_RECORDS, Row(self.deadletter_topic, key, data or b"", headers))]
        return [(Row(event.request_id, event_to_bytes(event)), event.event_time_ms)]


# -- the keyed join ------------------------------------------------------------------------------
def _sample_json_line() -> Callable[[Sample], str]:
    try:
        import orjson

        dumps = orjson.dumps

        def line(sample: Sample) -> str:
            # orjson serializes the slots dataclass natively (same bytes as the local engine)
            return dumps(sample).decode("utf-8")

    except ImportError:  # pragma: no cover

        def line(sample: Sample) -> str:
            return _json.dumps(sample.to_json()).decode("utf-8")

    return line


class _ValueStateStore:
    """The current key's ValueState (Flink sets the key context; the key argument is not needed),
    with the states this function last wrote kept decoded by their bytes, which saves decoding them when
    the same key comes back soon. The ValueState stays the truth: a miss just decodes."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.raw: bytes | None = None  # what get() read for the key being processed
        self.held = 0  # impressions in that state (the core may change the state in place before put)
        #: impressions taken into state minus impressions dropped from it, since this instance started
        self.pending_impressions = 0
        self._decoded: dict[bytes, RequestState] = {}

    def get(self, key: str) -> RequestState | None:
        raw = self.raw = self.state.value()
        if raw is None:
            self.held = 0
            return None
        # taken out of the cache: the core may change it in place; put() caches what it writes
        state = self._decoded.pop(raw, None)
        if state is None:
            state = state_from_bytes(raw)
        self.held = len(state.impressions)
        return state

    def put(self, key: str, state: RequestState) -> None:
        data = state_to_bytes(state)
        if data != self.raw:
            self.state.update(data)
        self.pending_impressions += len(state.impressions) - self.held
        decoded = self._decoded
        decoded[data] = state
        if len(decoded) > DECODED_CACHE_SIZE:
            del decoded[next(iter(decoded))]

    def delete(self, key: str) -> None:
        if self.raw is not None:
            self.state.clear()
            self.pending_impressions -= self.held


class _FlinkTimers:
    """Timers go to Flink's timer service of the call in progress (Flink deduplicates them)."""

    def __init__(self) -> None:
        self.service: Any = None

    def add(self, key: str, timestamp_ms: int) -> None:
        self.service.register_event_time_timer(timestamp_ms)


class JoinFunction(KeyedProcessFunction):
    """The join core as a KeyedProcessFunction keyed by ``request_id``.

    Its Flink metrics (group ``sampleJoin``): eventsIn and lateEvents by ``type``, samplesOut by
    ``task`` and ``attribution``, unmatched by ``reason``, ignoredLabels by ``label_type``, and
    pendingImpressions (taken into state minus dropped, since the instance started: after a restore
    it starts from 0, see docs/observability.md). Reported once a second (:meth:`report`).

    ``output="json"`` (replay): samples are JSON lines on the main output, unmatched labels JSON
    lines on the ``UNMATCHED_LINES`` side output. ``output="avro"`` (streaming job): samples and
    unmatched labels are ``KAFKA_OUT_TYPE`` rows on the main output, Avro single-object encoded,
    to ``samples_prefix + task`` keyed by impression_id and to ``unmatched_topic`` keyed by
    request_id.
    """

    def __init__(
        self,
        join: dict[str, Any],
        output: str = "json",
        *,
        samples_prefix: str = "samples.",
        unmatched_topic: str = "samples.unmatched",
        stats_dir: str | None = None,
    ) -> None:
        if output not in ("json", "avro"):
            raise ValueError(f"output must be 'json' or 'avro', got {output!r}")
        self.join_data = join
        self.output = output
        self.samples_prefix = samples_prefix
        self.unmatched_topic = unmatched_topic
        self.stats_dir = stats_dir
        self._reset()

    def _reset(self) -> None:
        self.runner: KeyedRunner | None = None
        self.store: _ValueStateStore | None = None
        self.timers = _FlinkTimers()
        self.subtask = 0
        self.sample_counts: Counter[tuple[str, ...]] = Counter()  # (task, attribution)
        self.reason_counts: Counter[str] = Counter()
        self.type_counts = [0, 0, 0]  # events in, by kind (_IMPRESSION, _SNAPSHOT, _LABEL)
        self.late_counts = [0, 0, 0]  # events at or behind the watermark they were processed under
        self.metrics: FlinkCounters | None = None
        self.report_due = False  # a processing-time timer will report the counts

    def open(self, runtime_context: RuntimeContext) -> None:
        from jobs.config import JoinConfig

        self._reset()
        core = SampleJoin(JoinConfig.model_validate(self.join_data).spec())
        state = runtime_context.get_state(ValueStateDescriptor(STATE_NAME, Types.PICKLED_BYTE_ARRAY()))
        self.store = _ValueStateStore(state)
        self.runner = KeyedRunner(core, self.store, self.timers)
        self.subtask = subtask_index(runtime_context)
        metrics = self.metrics = FlinkCounters(runtime_context.get_metrics_group())
        types = [(t,) for t in EVENT_TYPES]
        metrics.declare("eventsIn", types)
        metrics.declare("lateEvents", types)
        metrics.declare("samplesOut", [(t, a) for t in core.task_names for a in ATTRIBUTIONS])
        metrics.declare("unmatched", [(r,) for r in UNMATCHED_REASONS])
        metrics.declare("pendingImpressions", [()])
        if self.output == "json":
            self.sample_out: Callable[[Sample], Any] = _sample_json_line()
            self.unmatched_out: Callable[[UnmatchedLabel], Any] = lambda u: (
                UNMATCHED_LINES,
                _json.dumps(u.to_json()).decode("utf-8"),
            )
        else:
            wire = WireFormat()
            encode_sample, encode_unmatched = wire.encode_sample, wire.encode_unmatched
            topics = {name: f"{self.samples_prefix}{name}" for name in core.task_names}
            unmatched_topic = self.unmatched_topic
            self.sample_out = lambda s: Row(
                topics[s.task], s.impression_id.encode("utf-8"), encode_sample(s), None
            )
            self.unmatched_out = lambda u: Row(
                unmatched_topic, u.request_id.encode("utf-8"), encode_unmatched(u), None
            )

    def close(self) -> None:
        self.report()
        _write_stats(
            self.stats_dir,
            "join",
            self.subtask,
            {
                "samples": [[t, a, n] for (t, a), n in self.sample_counts.items()],
                "unmatched": dict(self.reason_counts),
                "ignored_label_types": dict(self.runner.ignored_label_types) if self.runner else {},
                "events": sum(self.type_counts),
                "timers_fired": self.runner.timers_fired if self.runner else 0,
            },
        )

    def report(self) -> None:
        """Move the counts since the last report into the Flink counters (once a second, and at close)."""
        metrics, runner, store = self.metrics, self.runner, self.store
        if metrics is None or runner is None or store is None:
            return
        metrics.report("eventsIn", {(t,): n for t, n in zip(EVENT_TYPES, self.type_counts, strict=True)})
        metrics.report("lateEvents", {(t,): n for t, n in zip(EVENT_TYPES, self.late_counts, strict=True)})
        metrics.report("samplesOut", self.sample_counts)
        metrics.report("unmatched", {(r,): n for r, n in self.reason_counts.items()})
        metrics.report("ignoredLabels", {(t,): n for t, n in runner.ignored_label_types.items()})
        metrics.report("pendingImpressions", {(): store.pending_impressions})

    def _report_soon(self, service: Any) -> None:
        """Register the processing-time timer that reports the counts (one at a time)."""
        self.report_due = True
        service.register_processing_time_timer(int(time.time() * 1000) + REPORT_INTERVAL_MS)

    def process_element(self, value: bytes, ctx: KeyedProcessFunction.Context) -> list[Any]:
        runner = self.runner
        assert runner is not None
        service = self.timers.service = ctx.timer_service()
        t = _loads(value)  # event_from_bytes, with its kind counted on the way
        kind = t[0]
        self.type_counts[kind] += 1
        event = _MAKE[kind](*t[1:])
        watermark = service.current_watermark()
        if event.event_time_ms <= watermark:
            self.late_counts[kind] += 1
        if not self.report_due:
            self._report_soon(service)
        runner.on_event(event, watermark)
        return self._drain(runner)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> list[Any]:
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:  # ours: report the counts; the join has none
            self.report_due = False
            self.report()
            return []
        runner = self.runner
        assert runner is not None
        service = self.timers.service = ctx.timer_service()
        if not runner.on_timer("", timestamp, service.current_watermark()):
            return []  # the key's state was cleared since: nothing waits on this timer
        if not self.report_due:
            self._report_soon(service)
        return self._drain(runner)

    def _drain(self, runner: KeyedRunner) -> list[Any]:
        """The outputs of the call, as this function's output records."""
        out: list[Any] = []
        if not (runner.samples or runner.unmatched):
            return out
        samples, unmatched = runner.drain()
        if samples:
            sample_out = self.sample_out
            counts = self.sample_counts
            for s in samples:
                counts[(s.task, s.attribution)] += 1
                out.append(sample_out(s))
        if unmatched:
            unmatched_out = self.unmatched_out
            for u in unmatched:
                self.reason_counts[u.reason] += 1
                out.append(unmatched_out(u))
        return out
