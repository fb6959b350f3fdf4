"""Nothing the join emits is refused by the trainer: the two halves agree by construction.

Events with any values the join's input forms can carry (JSON lines, Avro messages), the edges
included (negative or huge positions, empty strings, NaN and infinite numbers, times at the ends of
the accepted range, labels before their impression or beyond the horizon), go through the join's own
input checks; whatever it accepts is joined, and every sample it emits is encoded as the runtimes do
and decoded by the trainer (``decode_sample``, the sidecar's Sample contract) and read as the trainer
reads a replay's output file (``parse_sample``): none may be refused. It runs in this venv because the
trainer's decoding does not import TensorFlow.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.defaults import ATTRIBUTION_HORIZON_MS
from common.topics import (
    DEADLETTER_TOPIC,
    FEATURE_SNAPSHOTS_TOPIC,
    IMPRESSIONS_TOPIC,
    LABELS_TOPIC,
    UNMATCHED_TOPIC,
    samples_topic,
)
from jobs.config import JoinConfig, SampleJoinConfig, TaskConfig
from jobs.core import SampleJoin, event_from_json
from jobs.core.events import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, BadEvent, Event
from jobs.core.local import LocalJoinRunner
from jobs.runtime import _json
from jobs.runtime.kafka_io import WireFormat
from schemas import DecodeError
from schemas.records import POSITION_MAX, POSITION_MIN
from tests.schemas.schema_strategies import IDS, TEXT
from trainer.samples import BadRecord, decode_sample, parse_sample

WIRE = WireFormat()
MIN, HOUR = 60_000, 3_600_000
# Two tasks, so that sample ids carry both suffixes and a label type no task uses is seen too.
JOIN = JoinConfig(tasks=(TaskConfig(name="click"), TaskConfig(name="conv", label_type="conversion", window="1h",
                                                                horizon="7d", snapshot_wait="1m")))

TIMES = st.one_of(
    st.integers(MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS - 1),
    st.sampled_from([MIN_EVENT_TIME_MS, MIN_EVENT_TIME_MS - 1, MAX_EVENT_TIME_MS - 1, MAX_EVENT_TIME_MS]),
)
OFFSETS = st.one_of(  # of a label or a snapshot after its impression: the join's decision edges
    st.sampled_from([0, -1, 30_000, 10 * MIN, 10 * MIN + 1, HOUR, 24 * HOUR, 24 * HOUR + 1, 7 * 24 * HOUR + 1]),
    st.integers(-HOUR, 8 * 24 * HOUR),
)
POSITIONS = st.one_of(
    st.integers(-(2**31), 2**31 - 1), st.sampled_from([-1, 0, 2**31 - 1, 2**31]), st.none(), st.just(1.0)
)
NUMBERS = st.one_of(
    st.floats(),  # NaN and infinities included
    st.sampled_from([0.0, -0.0, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308]),
    st.integers(-(2**63), 2**63 - 1),
)
STRINGS = st.one_of(TEXT, st.just(""))
STR_MAPS = st.dictionaries(STRINGS, STRINGS, max_size=3)
NUMBER_MAPS = st.dictionaries(STRINGS, NUMBERS, max_size=3)
LABEL_TYPES = st.sampled_from(["click", "conversion", "unused", ""])


@st.composite
def requests(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One request's events as their JSON forms: impressions, maybe a snapshot, labels of them."""
    rid = draw(st.one_of(IDS, st.just("")))
    events: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 2))):
        iid, t = draw(st.one_of(IDS, st.just(""))), draw(TIMES)
        impression = {"type": "impression", "request_id": rid, "impression_id": iid, "user_id": draw(STRINGS),
                      "item_id": draw(STRINGS), "event_time_ms": t, "context": draw(STR_MAPS)}
        position = draw(POSITIONS)
        if position is not None:
            impression["position"] = position
        events.append(impression)
        if draw(st.booleans()):
            events.append({"type": "feature_snapshot", "request_id": rid, "event_time_ms": t + draw(OFFSETS),
                           "sparse": draw(STR_MAPS), "dense": draw(NUMBER_MAPS)})
        for _ in range(draw(st.integers(0, 2))):
            events.append({"type": "label", "request_id": rid, "impression_id": iid, "label_type": draw(LABEL_TYPES),
                           "event_time_ms": t + draw(OFFSETS), "value": draw(NUMBERS)})
    return events


def _through_json(obj: dict[str, Any]) -> Event | None:
    """The event a JSON line gives the join (the replay, the Flink file source), None if refused."""
    try:
        line = json.dumps(obj, allow_nan=True)  # what a producer may write; the join's parser decides
        return event_from_json(_json.loads(line))
    except (BadEvent, _json.JSONDecodeError):
        return None


def _through_avro(obj: dict[str, Any]) -> Event | None:
    """The event an Avro message gives the join (the embedded runtime, the Flink Kafka source)."""
    try:
        data = WIRE.encode_event_json(obj)
    except Exception:  # not a value the Avro type can hold: no such message exists
        return None
    try:
        return WIRE.decode_event(data)
    except (BadEvent, DecodeError):
        return None


def _accepted(objs: list[dict[str, Any]], route: str) -> list[Event]:
    through = _through_json if route == "json" else _through_avro
    return [e for e in map(through, objs) if e is not None]


def _check_the_trainer_takes_every_sample(events: list[Event]) -> int:
    runner = LocalJoinRunner(SampleJoin(JOIN))
    for event in events:
        runner.process(event)
    runner.finish()
    for sample in runner.samples:
        record = sample.to_json()
        for data in (WIRE.encode_sample(sample), WIRE.codec.encode("Sample", record)):
            try:
                decoded = decode_sample(data, WIRE.codec)
            except BadRecord as exc:  # pragma: no cover - the failure this test exists for
                pytest.fail(f"the trainer refuses a sample the join emitted: {exc}; sample {record}")
            assert (decoded.sample_id, decoded.position, decoded.dense) == (
                record["sample_id"], record["position"], record["dense"])
        try:  # a replay's output file, read by `trainer fit`
            parse_sample(json.loads(_json.dumps(record)))
        except BadRecord as exc:  # pragma: no cover
            pytest.fail(f"the trainer refuses a sample line the join wrote: {exc}; sample {record}")
    return len(runner.samples)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=4).map(lambda rs: [e for r in rs for e in r]), st.randoms(),
       st.sampled_from(["json", "avro"]))
def test_every_sample_the_join_emits_is_one_the_trainer_accepts(
    objs: list[dict[str, Any]], order: Any, route: str
) -> None:
    order.shuffle(objs)  # any arrival order: late, early, out of order
    _check_the_trainer_takes_every_sample(_accepted(objs, route))


def test_the_edges_that_were_refused_are_joined_now_or_dead_lettered() -> None:
    """Seeds of the property: the values that broke the agreement before (a negative position was
    joined, then dead-lettered by the trainer) and the extremes both halves must take."""
    t = MAX_EVENT_TIME_MS - 1
    objs = [
        {"type": "impression", "request_id": "r", "impression_id": "i", "user_id": "", "item_id": "",
         "event_time_ms": t, "position": POSITION_MAX, "context": {"": ""}},
        {"type": "feature_snapshot", "request_id": "r", "event_time_ms": t,
         "dense": {"max": 1.7976931348623157e308, "tiny": 5e-324, "neg0": -0.0, "big": 2**63 - 1}},
        {"type": "label", "request_id": "r", "impression_id": "i", "label_type": "click", "event_time_ms": t,
         "value": 0},
        {"type": "impression", "request_id": "r2", "impression_id": "i2", "user_id": "u", "item_id": "v",
         "event_time_ms": 0, "position": POSITION_MIN},
        {"type": "label", "request_id": "r2", "impression_id": "i2", "label_type": "click", "event_time_ms": 0,
         "value": 1.0},
    ]
    for route in ("json", "avro"):
        assert _check_the_trainer_takes_every_sample(_accepted(objs, route)) >= 3  # POSITIVEs and a NEGATIVE
    negative = {**objs[0], "position": POSITION_MIN - 1}
    assert _through_json(negative) is None and _through_avro(negative) is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_dense_values_never_reach_a_sample(value: float) -> None:
    snapshot = {"type": "feature_snapshot", "request_id": "r", "event_time_ms": 0, "dense": {"x": value}}
    assert _through_json(snapshot) is None and _through_avro(snapshot) is None


def test_both_halves_default_to_one_set_of_topics_and_horizons() -> None:
    from trainer.config import TrainerConfig

    join, trainer = SampleJoinConfig(), TrainerConfig()
    topics = join.kafka.topics
    assert (topics.impressions, topics.feature_snapshots, topics.labels, topics.unmatched, topics.deadletter) == (
        IMPRESSIONS_TOPIC, FEATURE_SNAPSHOTS_TOPIC, LABELS_TOPIC, UNMATCHED_TOPIC, DEADLETTER_TOPIC)
    task = join.join.tasks[0]
    assert trainer.sidecar.topic == topics.samples(task.name) == samples_topic(task.name)
    assert trainer.sidecar.kafka.deadletter_topic == topics.deadletter
    assert trainer.loss.attribution_horizon_ms == task.horizon == ATTRIBUTION_HORIZON_MS
    assert trainer.sidecar.dedup.horizon >= task.horizon
    assert trainer.sidecar.kafka.bootstrap_servers == join.kafka.bootstrap_servers
    assert trainer.sidecar.redis.url == join.redis.url
