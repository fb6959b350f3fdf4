"""The streaming Flink job's metrics, read the way a user reads them: through Flink's Prometheus reporter.

The job's graph (decode, watermarks, key_by, the join) runs on a MiniCluster with the ``filesystem``
connector in place of Kafka (:class:`FileTables`, here unbounded: it watches its input directory, so
the job keeps running and its metrics stay registered). The test scrapes the reporter's endpoint
until the ``sampleJoin`` counters hold what the input makes them hold (events by type, samples by
attribution, unmatched by reason, dead letters by source topic, ignored labels, pending impressions),
checks that every ``flink_*`` name of infra/monitoring's dashboard and alert rules is exported, then
adds a file with an event far behind the watermark and waits for ``lateEvents``.

The job runs in a child process: a local MiniCluster loads metric reporters from its JVM's class
path only (not from PyFlink's ``plugins/`` folder), and PyFlink's gateway launcher appends
``HADOOP_CLASSPATH`` to that class path, so the child starts its JVM with the reporter jar there.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000
DEADLINE_S = 240.0

CONFIG: dict[str, Any] = {
    "join": {"tasks": [{"name": "click", "window": "1m", "horizon": "10m"}], "out_of_orderness": "5s",
             "idleness": "2s"},
    "kafka": {"bootstrap_servers": "127.0.0.1:1", "group_id": "sj-metrics"},
    "flink": {"parallelism": 1, "checkpoint_interval": "2s", "state_backend": "rocksdb"},
}
TOPIC_OF = {"impression": "events.impressions", "feature_snapshot": "events.feature_snapshots",
            "label": "events.labels"}


# -- the child: run the job until told to stop -----------------------------------------------------
def _run_job(config_json: str, source: str, sinks: str, port: str) -> int:
    from jobs.config import SampleJoinConfig
    from jobs.runtime.flink.env import make_environment
    from jobs.runtime.flink.job import build_job, streaming_options
    from jobs.runtime.flink.kafka import FileTables

    config = SampleJoinConfig.model_validate(json.loads(config_json))
    options = {
        **streaming_options(config),
        "metrics.reporter.prom.factory.class": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
        "metrics.reporter.prom.host": "127.0.0.1",
        "metrics.reporter.prom.port": port,
    }
    env = make_environment(config.flink.parallelism, options)
    build_job(env, config, FileTables(Path(source), Path(sinks), monitor_interval_ms=500))
    client = env.execute_async("sample-join-metrics-test")
    print("submitted", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    client.cancel().result()
    return 0


# -- the input ---------------------------------------------------------------------------------------
def _rows(events: list[dict[str, Any]], first_offset: int) -> str:
    from jobs.runtime.kafka_io import event_json_to_wire

    rows = []
    for n, event in enumerate(events):
        value = event_json_to_wire(event) if "raw" not in event else event["raw"]
        rows.append({
            "topic": event.get("topic") or TOPIC_OF[event["type"]], "partition": 0, "offset": first_offset + n,
            "key": base64.b64encode(event["request_id"].encode()).decode(),
            "value": base64.b64encode(value).decode(),
        })
    return "".join(json.dumps(r) + "\n" for r in rows)


def _impression(rid: str, t: int) -> dict[str, Any]:
    return {"type": "impression", "request_id": rid, "impression_id": f"{rid}-0", "user_id": "u1", "item_id": "v1",
            "position": 0, "context": {}, "event_time_ms": t}


def _label(rid: str, t: int, label_type: str = "click") -> dict[str, Any]:
    return {"type": "label", "request_id": rid, "impression_id": f"{rid}-0", "label_type": label_type,
            "event_time_ms": t, "value": 1.0}


def _first_batch() -> list[dict[str, Any]]:
    """20 requests (impression + snapshot), 8 clicked within the window, one repeated click, a click
    without impression, a label type no task uses, an undecodable record, and a last impression an
    hour later that moves the watermark past every window and horizon before it."""
    events: list[dict[str, Any]] = []
    for i in range(20):
        t = T0 + i * 1_000
        events.append(_impression(f"r{i}", t))
        events.append({"type": "feature_snapshot", "request_id": f"r{i}", "event_time_ms": t + 100,
                       "sparse": {"city": "bj"}, "dense": {}})
    for i in range(8):
        events.append(_label(f"r{i}", T0 + i * 1_000 + 10_000))
    events.append(_label("r0", T0 + 25_000))  # repeated: duplicate
    events.append(_label("orphan", T0 + 26_000))  # no impression, ever: no_impression
    events.append(_label("r9", T0 + 27_000, "purchase"))  # no task uses it: ignored
    events.append({"topic": "events.labels", "request_id": "bad", "raw": b"\x00 not avro", "event_time_ms": T0})
    events.sort(key=lambda e: e["event_time_ms"])
    events.append(_impression("clock", T0 + 3_600_000))
    return events


FIRST_EXPECTED = {
    ("eventsIn", (("type", "impression"),)): 21,
    ("eventsIn", (("type", "feature_snapshot"),)): 20,
    ("eventsIn", (("type", "label"),)): 11,
    ("lateEvents", (("type", "impression"),)): 0,
    ("lateEvents", (("type", "feature_snapshot"),)): 0,
    ("lateEvents", (("type", "label"),)): 0,
    ("samplesOut", (("attribution", "POSITIVE"), ("task", "click"))): 8,
    ("samplesOut", (("attribution", "NEGATIVE"), ("task", "click"))): 12,
    ("samplesOut", (("attribution", "LATE_POSITIVE"), ("task", "click"))): 0,
    ("unmatched", (("reason", "duplicate"),)): 1,
    ("unmatched", (("reason", "no_impression"),)): 1,
    ("unmatched", (("reason", "beyond_horizon"),)): 0,
    ("ignoredLabels", (("label_type", "purchase"),)): 1,
    ("deadLettered", (("source_topic", "events_labels"),)): 1,  # the reporter writes '.' in a label as '_'
    ("pendingImpressions", ()): 1,  # the clock's; the others were dropped at t_i + H
}


def _write_atomically(path: Path, text: str) -> None:
    """Whole files only: the file source skips hidden names, so a dot-file renamed into place."""
    hidden = path.with_name("." + path.name)
    hidden.write_text(text)
    os.replace(hidden, path)


# -- reading the reporter --------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _samples(port: int) -> Iterator[Any]:
    """Every sample the reporter exposes now."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        yield from family.samples


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The job's sampleJoin metrics, summed over subtasks: (metric, its own labels) -> value."""
    from jobs.runtime.flink.functions import METRICS, prometheus_name

    metric_of = {prometheus_name(m): m for m in METRICS}
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for sample in _samples(port):
        metric = metric_of.get(sample.name)
        if metric is not None:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k in METRICS[metric]))
            key = (metric, labels)
            values[key] = values.get(key, 0.0) + sample.value
    return values


def _rocksdb(port: int, estimate: str) -> dict[str, float]:
    """A RocksDB estimate of the job's state, by column family (one per state; summed over subtasks)."""
    name = f"flink_taskmanager_job_task_operator_column_family_rocksdb_{estimate}"
    out: dict[str, float] = {}
    for sample in _samples(port):
        if sample.name == name:
            family = sample.labels["column_family"]
            out[family] = out.get(family, 0.0) + sample.value
    return out


def _wait_for(what: str, check: Callable[[], bool], child: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert child.poll() is None, f"the job's process ended ({child.returncode}): {log.read_text()[-3000:]}"
        try:
            if check():
                return
        except OSError:
            pass  # the reporter is not up yet
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {DEADLINE_S:.0f} s")


@pytest.mark.flink
@pytest.mark.slow
def test_the_job_reports_its_counts_as_flink_metrics(tmp_path: Path) -> None:
    import pyflink

    reporters = Path(pyflink.__file__).parent / "plugins" / "metrics-prometheus"
    jars = sorted(reporters.glob("flink-metrics-prometheus-*.jar"))
    assert jars, "PyFlink ships the Prometheus reporter in plugins/metrics-prometheus"
    source = tmp_path / "input"
    source.mkdir()
    _write_atomically(source / "1.jsonl", _rows(_first_batch(), 0))
    port = _free_port()
    log = tmp_path / "job.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "HADOOP_CLASSPATH": os.pathsep.join(filter(None, [str(jars[-1]), os.environ.get("HADOOP_CLASSPATH")]))}
    with open(log, "w") as out:
        child = subprocess.Popen(
            [sys.executable, __file__, json.dumps(CONFIG), str(source), str(tmp_path / "out"), str(port)],
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
            start_new_session=True,
        )
    try:
        seen: dict[Any, float] = {}

        def first_batch_counted() -> bool:
            seen.clear()
            seen.update(_scrape(port))
            return all(seen.get(key) == value for key, value in FIRST_EXPECTED.items())

        try:
            _wait_for("first batch's counts", first_batch_counted, child, log)
        except AssertionError:
            raise AssertionError(f"metrics: {seen}; expected: {FIRST_EXPECTED}") from None

        # the state's size from RocksDB (streaming_options turns its estimates on), for the join's state.
        # Only their presence: RocksDB's key estimate subtracts each delete twice, so this small state,
        # mostly deleted, reads 0; at scale it is the figure RocksDB users know.
        for estimate in ("estimate_num_keys", "estimate_live_data_size"):
            assert "request_state" in _rocksdb(port, estimate)

        # every Flink name the dashboard and the alert rules use is one this running job exports
        from infra.monitoring import expressions, metric_names

        used = {n for expr in expressions().values() for n in metric_names(expr) if n.startswith("flink_")}
        exported = {sample.name for sample in _samples(port)}
        assert used and used <= exported, f"not exported by the running job: {sorted(used - exported)}"

        # an impression an hour behind the watermark, and a label behind it too
        late = [_impression("late", T0 + 5_000), _label("late", T0 + 6_000)]
        _write_atomically(source / "2.jsonl", _rows(late, 1_000))

        def late_counted() -> bool:
            seen.clear()
            seen.update(_scrape(port))
            return (seen.get(("lateEvents", (("type", "impression"),))) == 1
                    and seen.get(("lateEvents", (("type", "label"),))) == 1
                    and seen.get(("eventsIn", (("type", "impression"),))) == 22)

        try:
            _wait_for("late events", late_counted, child, log)
        except AssertionError:
            raise AssertionError(f"metrics: {seen}") from None
    finally:
        assert child.stdin is not None
        child.stdin.close()  # the child cancels the job and exits
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(_run_job(*sys.argv[1:]))
