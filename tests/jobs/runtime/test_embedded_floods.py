"""Floods through the embedded runtime on a real broker and Redis: the join state kept in Redis stays
bounded (dropped once the watermark passes the horizon, with a TTL as a safety net), the per-request
caps count what they turn away, and nothing is left behind at the end of the input.

Figures are printed (``-s``) and recorded as junit properties.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from confluent_kafka import Producer

from jobs.core.join import IMPRESSIONS_DROPPED, LABELS_NOT_BUFFERED
from jobs.runtime.embedded.runtime import EmbeddedRuntime
from jobs.runtime.kafka_io import event_json_to_wire
from jobs.runtime.summary import RunSummary
from tests.jobs.runtime.isolated import isolated_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_700_000_000_000
STEP_MS = 20  # 50 events per second of event time
CAP = 300


def flood_events() -> list[dict[str, Any]]:
    """In event-time order: lone impressions and lone labels (120 s), a hot request, a label storm."""
    out: list[dict[str, Any]] = []
    for i in range(6_000):
        t = T0 + i * STEP_MS
        out.append({"type": "impression", "request_id": f"lone-{i}", "impression_id": f"li{i}", "user_id": "u",
                    "item_id": "v", "event_time_ms": t})
        if i % 20 == 0:  # every input topic moves on (an empty one would hold the watermark back)
            out.append({"type": "feature_snapshot", "request_id": f"lone-{i}", "event_time_ms": t})
        if i % 2 == 0:
            out.append({"type": "label", "request_id": f"orphan-{i}", "impression_id": f"oi{i}",
                        "label_type": "click", "event_time_ms": t})
        if i == 3_000:
            out += [{"type": "impression", "request_id": "hot", "impression_id": f"h{k}", "user_id": "u",
                     "item_id": "v", "event_time_ms": t} for k in range(2_000)]
            out.append({"type": "impression", "request_id": "storm", "impression_id": "s", "user_id": "u",
                        "item_id": "v", "event_time_ms": t})
            out += [{"type": "label", "request_id": "storm", "impression_id": "s", "label_type": "click",
                     "event_time_ms": t + 1} for _ in range(3_000)]
            out += [{"type": "label", "request_id": "early", "impression_id": f"e{k}", "label_type": "click",
                     "event_time_ms": t} for k in range(1_000)]
    return out


def test_flood_keeps_redis_state_bounded(
    kafka_bootstrap: str, redis_url: str, record_property: Callable[[str, object], None]
) -> None:
    tag = uuid.uuid4().hex[:10]
    # Small fetches interleave the three topics finely: the watermark (the minimum over them) then
    # follows the stream, whatever part of it the runtime reads between two checkpoints.
    small_fetches = {"max.partition.fetch.bytes": 4096}
    config, topics = isolated_config(kafka_bootstrap, redis_url, tag, consumer=small_fetches, join={
        "tasks": [{"name": "click", "window": "10s", "horizon": "30s", "snapshot_wait": "1s"}],
        "max_impressions_per_request": CAP, "max_buffered_labels_per_request": CAP})
    events = flood_events()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for event in events:
        producer.produce(topics[event["type"]], event_json_to_wire(event), event["request_id"].encode())
        producer.poll(0)
    assert producer.flush(60) == 0

    client = redis.Redis.from_url(redis_url)
    pattern = f"test-{tag}:g-{tag}:*:s:*"
    runtime = EmbeddedRuntime(config)
    result: list[RunSummary] = []
    thread = threading.Thread(target=lambda: result.append(runtime.run()), daemon=True)
    samples: list[tuple[int, int]] = []  # (state keys, their bytes) over the run
    ttls: list[int] = []
    thread.start()
    deadline = time.monotonic() + 300
    while thread.is_alive() and time.monotonic() < deadline:
        keys = list(client.scan_iter(match=pattern, count=1_000))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.strlen(key)
        sizes = pipe.execute() if keys else []
        samples.append((len(keys), sum(sizes)))
        for key in keys[:5]:
            ttls.append(int(client.pttl(key)))  # -2: cleared meanwhile
        thread.join(0.2)
    assert not thread.is_alive(), "the runtime did not finish the flood in time"
    assert result and result[0].finished_input
    summary = result[0]
    final_keys = list(client.scan_iter(match=pattern, count=1_000))

    distinct_requests = len({e["request_id"] for e in events})
    figures = {
        "events": len(events),
        "distinct_requests": distinct_requests,
        "peak_state_keys_in_redis": max(k for k, _ in samples),
        "peak_state_bytes_in_redis": max(b for _, b in samples),
        "state_keys_after_end": len(final_keys),
        "max_ttl_ms_seen": max(ttls, default=-2),
        "impressions_dropped": runtime.join.over_cap[IMPRESSIONS_DROPPED],
        "labels_not_buffered": runtime.join.over_cap[LABELS_NOT_BUFFERED],
        "samples_out": summary.samples_out,
        "unmatched": summary.unmatched,
        "redis_samples": len(samples),
    }
    for k, v in figures.items():
        record_property(k, v)
    line = ", ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\n[flood/redis] {line}")
    # the watermark drops a request's state once its horizon has passed: far fewer keys than requests
    # (how many are alive at a checkpoint depends on how much one batch reads: well below all of them)
    assert figures["peak_state_keys_in_redis"] <= 0.8 * distinct_requests, line
    assert figures["state_keys_after_end"] == 0, line
    assert ttls and all(t > 0 or t == -2 for t in ttls) and max(ttls) > 0, f"state keys need a TTL; {line}"
    assert figures["impressions_dropped"] == 2_000 - CAP, line
    # the early labels beyond the cap; and those of the storm's labels read before its impression (another
    # topic, read in small fetches: any share of the storm may come first) beyond the CAP that wait for it:
    # 0 to 3_000 - CAP more. They are unmatched at once, so the totals below are the same either way.
    assert 1_000 - CAP <= figures["labels_not_buffered"] <= (1_000 - CAP) + (3_000 - CAP), line
    # nothing else is lost: one sample per kept impression, every label accounted for
    assert summary.samples_out == 6_000 + CAP + 1, line
    assert summary.unmatched == 3_000 + (3_000 - 1) + 1_000, line  # orphans, storm duplicates, early labels
