"""The embedded runtime against a real broker and a real Redis.

Reference ("the contract's samples"): the same events, in the generator's arrival order, through the
in-memory reference runner that ``replay --engine local`` drives, ended as a bounded input. The
runtime runs in bounded mode (``local.exit_when_idle``), which ends its input the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from common.task_contract import read_task_contract
from common.topics import create_topics
from devstack.processes import free_port
from jobs.config import SampleJoinConfig
from jobs.core.events import event_from_json
from jobs.core.join import SampleJoin
from jobs.core.local import LocalJoinRunner
from jobs.generate import GeneratorConfig, KafkaTarget
from jobs.generate import run as generate
from jobs.runtime.embedded.runtime import EmbeddedRuntime
from jobs.runtime.kafka_io import event_json_to_wire
from schemas.codec import Codec

ROOT = Path(__file__).resolve().parents[3]
WINDOW, HORIZON = "1m", "10m"
pytestmark = pytest.mark.integration


class Stack:
    """Fresh topics (inputs with ``partitions`` partitions), a group and a Redis prefix for one test."""

    def __init__(self, bootstrap: str, redis_url: str, partitions: int, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:10]
        self.bootstrap, self.redis_url, self.partitions, self.tmp = bootstrap, redis_url, partitions, tmp
        self.impressions = f"events.impressions.{tag}"
        self.snapshots = f"events.feature_snapshots.{tag}"
        self.labels = f"events.labels.{tag}"
        self.samples_prefix = f"samples.{tag}."
        self.unmatched = f"samples.unmatched.{tag}"
        self.deadletter = f"deadletter.{tag}"
        self.group = f"sample-join-{tag}"
        self.key_prefix = f"test-{tag}"
        create_topics(bootstrap, {t: (partitions, 0) for t in (self.impressions, self.snapshots, self.labels)})
        self.events_file = tmp / "events.jsonl"
        self.tasks: list[dict[str, Any]] = [{"name": "click", "window": WINDOW, "horizon": HORIZON}]

    def overrides(self, **extra: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kafka": {
                "bootstrap_servers": self.bootstrap,
                "group_id": self.group,
                "topics": {
                    "impressions": self.impressions,
                    "feature_snapshots": self.snapshots,
                    "labels": self.labels,
                    "samples_prefix": self.samples_prefix,
                    "unmatched": self.unmatched,
                    "deadletter": self.deadletter,
                },
            },
            "redis": {"url": self.redis_url, "key_prefix": self.key_prefix},
            "join": {"tasks": self.tasks},
            "checkpoint": {"interval": "500ms"},
            "local": {"exit_when_idle": "2s"},
        }
        for dotted, value in extra.items():
            node = data
            *parents, leaf = dotted.split("__")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return data

    def config(self, **extra: Any) -> SampleJoinConfig:
        return SampleJoinConfig.model_validate(self.overrides(**extra))

    def config_file(self, name: str = "config.yaml", **extra: Any) -> Path:
        path = self.tmp / name
        path.write_text(yaml.safe_dump(self.overrides(**extra)))
        return path

    def generate(self, impressions: int, seed: int = 1, speedup: float = 0.0, **kw: Any) -> None:
        settings: dict[str, Any] = {"rate": 100.0, "delay_mean_ms": 15_000, **kw}
        cfg = GeneratorConfig(impressions=impressions, seed=seed, window_ms=60_000, horizon_ms=600_000, **settings)
        target = KafkaTarget(self.bootstrap, self.impressions, self.snapshots, self.labels)
        generate(cfg, out=str(self.events_file), kafka=target, speedup=speedup)

    def contract(self) -> tuple[dict[str, dict[str, Any]], Counter[str]]:
        """Samples by sample_id and unmatched (as canonical JSON) of the reference runner."""
        runner = LocalJoinRunner(SampleJoin(self.config().join))
        with self.events_file.open() as fh:
            for line in fh:
                runner.process(event_from_json(json.loads(line)))
        runner.finish()
        samples = {s.sample_id: s.to_json() for s in runner.samples}
        assert len(samples) == len(runner.samples)
        return samples, Counter(json.dumps(u.to_json(), sort_keys=True) for u in runner.unmatched)

    def read(self, topic: str) -> list[Any]:
        """Every record of ``topic`` (all partitions, from the start) as confluent-kafka messages."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.partition.eof": True,
                "enable.auto.commit": False,
            }
        )
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                return []
            parts = [TopicPartition(topic, p, 0) for p in meta.partitions]
            consumer.assign(parts)
            done: set[int] = set()
            out = []
            deadline = time.monotonic() + 60
            while len(done) < len(parts) and time.monotonic() < deadline:
                for msg in consumer.consume(1000, 0.5):
                    if msg.error():
                        done.add(msg.partition() or 0)
                    else:
                        out.append(msg)
            return out
        finally:
            consumer.close()

    def samples(self, task: str = "click") -> list[dict[str, Any]]:
        codec = Codec.default()
        return [codec.decode(m.value() or b"", "Sample") for m in self.read(f"{self.samples_prefix}{task}")]

    def unmatched_records(self) -> list[dict[str, Any]]:
        codec = Codec.default()
        return [codec.decode(m.value(), "UnmatchedLabel") for m in self.read(self.unmatched)]

    def cli(self, config: Path, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "jobs.sample_join", "run", "--engine", "local", "--config", str(config), *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.fixture
def stack(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Stack:
    return Stack(kafka_bootstrap, redis_url, 3, tmp_path)


def _by_id(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """sample_id -> sample; every copy of a sample_id must be identical."""
    out: dict[str, dict[str, Any]] = {}
    for s in samples:
        seen = out.setdefault(s["sample_id"], s)
        assert seen == s, f"two different samples with id {s['sample_id']}"
    return out


def _assert_same_samples(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> None:
    missing, extra = set(want) - set(got), set(got) - set(want)
    assert not missing and not extra, f"{len(missing)} missing, e.g. {sorted(missing)[:3]}; {len(extra)} extra"
    different = [k for k in want if got[k] != want[k]]
    assert not different, f"{len(different)} differ, e.g. {got[different[0]]} != {want[different[0]]}"


def _wait(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"runtime did not finish in {timeout} s; stderr tail:\n{err[-3000:]}") from None
    return proc.returncode, err


# -- one process, in-process ----------------------------------------------------------------------


def test_runtime_gives_the_contracts_samples_and_unmatched(stack: Stack) -> None:
    stack.tasks.append({"name": "conversion", "window": "2m", "horizon": HORIZON})  # a second task, own topic
    stack.generate(
        4000,
        seed=3,
        duplicate_rate=0.03,
        orphan_rate=0.01,
        late_fraction=0.2,
        beyond_horizon_fraction=0.05,
        conversion_rate=0.5,
    )
    runtime = EmbeddedRuntime(stack.config())
    runtime.connect()
    summary = runtime.run()
    assert summary.finished_input
    want, want_unmatched = stack.contract()
    clicks, conversions = stack.samples("click"), stack.samples("conversion")
    assert {s["task"] for s in clicks} == {"click"} and {s["task"] for s in conversions} == {"conversion"}
    got_list = clicks + conversions
    assert len(got_list) == len(want)  # a clean run emits every sample exactly once
    _assert_same_samples(_by_id(got_list), want)

    # The same labels are unmatched. The reason of a label later than the horizon is `beyond_horizon`
    # while its impression is held and `no_impression` once the watermark dropped it (docs/join.md rule 4):
    # that depends on how far the watermark got, which differs between one global watermark and
    # per-partition ones, so those two reasons may swap; every other reason must agree.
    def by_label(records: Counter[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for text, n in records.items():
            u = json.loads(text)
            reason = u.pop("reason")
            out.setdefault(json.dumps(u, sort_keys=True), []).extend([reason] * n)
        return {k: sorted(v) for k, v in out.items()}

    got_unmatched = by_label(Counter(json.dumps(u, sort_keys=True) for u in stack.unmatched_records()))
    want_by_label = by_label(want_unmatched)
    assert got_unmatched.keys() == want_by_label.keys()
    impression_time: dict[str, int] = {}
    with stack.events_file.open() as fh:
        for line in fh:
            e = json.loads(line)
            if e["type"] == "impression":
                impression_time.setdefault(e["impression_id"], e["event_time_ms"])
    swapped = 0
    for label, reasons in want_by_label.items():
        other = got_unmatched[label]
        assert len(other) == len(reasons)
        if other != reasons:  # only labels beyond the horizon (a repeated one may then be a `duplicate`)
            u = json.loads(label)
            assert u["event_time_ms"] - impression_time[u["impression_id"]] > 600_000, (label, other, reasons)
            swapped += 1
    assert swapped < len(want_by_label) // 2
    assert {"no_impression", "beyond_horizon", "duplicate"} <= {json.loads(u)["reason"] for u in want_unmatched}
    assert summary.events_in == sum(1 for _ in stack.events_file.open())
    assert summary.deadletter == 0
    assert summary.state_bytes_per_pending_impression and 20 < summary.state_bytes_per_pending_impression < 2000

    # Each task's settings, as run, published for the trainer's start-up check (docs/trainer.md).
    client = redis.Redis.from_url(stack.redis_url)
    for task, window_ms in (("click", 60_000), ("conversion", 120_000)):
        contract = read_task_contract(client, stack.samples_prefix + task)
        assert contract is not None, task
        assert (contract.task, contract.window_ms, contract.horizon_ms) == (task, window_ms, 600_000)
        assert stack.group in contract.published_by


def test_bad_records_go_to_the_deadletter_and_the_runtime_goes_on(stack: Stack) -> None:
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    good = [
        {
            "type": "impression",
            "request_id": "r1",
            "impression_id": "i1",
            "user_id": "u",
            "item_id": "v",
            "event_time_ms": 1_700_000_000_000,
        },
        {
            "type": "label",
            "request_id": "r1",
            "impression_id": "i1",
            "label_type": "click",
            "event_time_ms": 1_700_000_001_000,
        },
    ]
    codec = Codec.default()
    wrong_record = codec.encode(
        "UnmatchedLabel",
        {"request_id": "r1", "impression_id": "i1", "label_type": "click", "event_time_ms": 1, "reason": "duplicate"},
    )
    bad = [
        (stack.impressions, b"not avro at all"),
        (stack.labels, b"\xc3\x01" + b"\x00" * 8 + b"xx"),  # unknown fingerprint
        (stack.labels, wrong_record),  # a valid record, but not an input event
    ]
    topics = {"impression": stack.impressions, "label": stack.labels}
    producer.produce(topics["impression"], event_json_to_wire(good[0]), b"r1")
    for topic, value in bad:
        producer.produce(topic, value, b"r1")
    producer.produce(topics["label"], event_json_to_wire(good[1]), b"r1")
    producer.flush(10)

    summary = EmbeddedRuntime(stack.config()).run()
    assert summary.deadletter == 3
    letters = stack.read(stack.deadletter)
    assert sorted(m.value() for m in letters) == sorted(v for _, v in bad)
    by_value = {m.value(): m for m in letters}
    for topic, value in bad:
        msg = by_value[value]
        headers = {k: v.decode() for k, v in msg.headers()}
        assert msg.key() == b"r1"
        assert headers["source_topic"] == topic
        source = next(m for m in stack.read(topic) if m.value() == value)
        assert headers["source_partition"] == str(source.partition())
        assert headers["source_offset"] == str(source.offset())
        assert headers["error"]
    errors = {by_value[v].headers()[0][1].decode() for _, v in bad}
    assert any("c3 01" in e for e in errors) and any("fingerprint" in e for e in errors)
    assert any("UnmatchedLabel" in e for e in errors)
    samples = stack.samples()
    assert [s["sample_id"] for s in samples] == ["i1:click:POSITIVE"]


# -- processes: SIGKILL, SIGTERM, scale-out, unreachable services ----------------------------------


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(stack: Stack) -> None:
    """The events arrive over ~25 s (paced generator) while the runtime is killed and restarted."""
    writer = threading.Thread(target=lambda: stack.generate(12_000, seed=5, speedup=50.0, rate=20.0), daemon=True)
    config = stack.config_file(checkpoint={"interval": "300ms"})
    rng = random.Random(42)
    kills = 0
    writer.start()
    attempts = 0
    while (writer.is_alive() or kills < 3) and attempts < 12:
        attempts += 1
        proc = stack.cli(config)
        time.sleep(rng.uniform(2.0, 7.0))
        if proc.poll() is not None:  # finished the input already (bounded mode): fine if it says so
            rc, err = _wait(proc, 10)
            assert rc == 0, err[-3000:]
            continue
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
    writer.join()
    assert kills >= 2
    rc, err = _wait(stack.cli(config), 240)
    assert rc == 0, err[-3000:]
    want, _ = stack.contract()
    got_list = stack.samples()
    _assert_same_samples(_by_id(got_list), want)  # every copy of an id is identical, none missing
    assert len(got_list) >= len(want)
    print(f"{kills} kills; {len(want)} samples, {len(got_list) - len(want)} emitted again after restarts")


@pytest.mark.slow
def test_sigterm_flushes_checkpoints_and_exits_0_then_resumes_exactly(stack: Stack) -> None:
    port = free_port()
    config = stack.config_file(local={"exit_when_idle": None})
    proc = stack.cli(config, "--metrics-port", str(port))
    stop = threading.Event()
    writer = threading.Thread(target=lambda: stack.generate(6000, seed=9), daemon=True)
    try:
        writer.start()
        writer.join(120)
        # the runtime is consuming: its metrics show the events
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                text = ""
            if "sample_join_samples_out_total{" in text and "sample_join_checkpoint_duration_seconds_count" in text:
                break
            time.sleep(0.5)
        for name in (
            "sample_join_events_in_total",
            "sample_join_samples_out_total",
            "sample_join_watermark_ms",
            "sample_join_checkpoint_duration_seconds",
            "sample_join_state_bytes",
            "sample_join_watermark_lag_seconds",
        ):
            assert name in text, name
        proc.send_signal(signal.SIGTERM)
        rc, err = _wait(proc, 30)
        assert rc == 0, err[-3000:]
        assert "embedded runtime stopped" in err
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert lines and all("msg" in line and "level" in line for line in lines)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    before = stack.samples()
    rc, err = _wait(stack.cli(config, "--exit-when-idle", "2s"), 120)  # the CLI flag of bounded mode
    assert rc == 0, err[-3000:]
    want, _ = stack.contract()
    got_list = stack.samples()
    assert len(before) > 0
    # a graceful stop checkpoints after flushing: the restart neither repeats nor loses anything
    assert len(got_list) == len(want)
    _assert_same_samples(_by_id(got_list), want)


@pytest.mark.slow
def test_two_processes_in_one_group_give_the_samples_of_one(stack: Stack) -> None:
    # bounded mode counts idleness from the start too: long enough for the group join plus the wait here
    config = stack.config_file(local={"exit_when_idle": "10s"})
    procs = [stack.cli(config), stack.cli(config)]
    time.sleep(5)  # both join the group before the events arrive
    stack.generate(8000, seed=13)
    results = [_wait(p, 180) for p in procs]
    for rc, err in results:
        assert rc == 0, err[-3000:]
    assigned = []
    for _, err in results:
        parts: set[int] = set()
        for line in err.splitlines():
            if '"partitions assigned"' in line:
                parts |= set(json.loads(line)["partitions"])
        assigned.append(parts)
    assert all(assigned), f"each process should own partitions at some point, got {assigned}"
    want, _ = stack.contract()
    got_list = stack.samples()
    _assert_same_samples(_by_id(got_list), want)
    assert len(got_list) == len(want)  # rebalances are graceful (checkpoint after flush): nothing twice


def test_unreachable_kafka_or_redis_is_waited_for_then_one_line_and_exit_1(stack: Stack, tmp_path: Path) -> None:
    """As the trainer's: a bounded wait with progress lines (JSON log lines), then one plain line."""
    dead = f"127.0.0.1:{free_port()}"
    for name, override, words in (
        ("kafka.yaml", {"kafka": {**stack.overrides()["kafka"], "bootstrap_servers": dead}}, f"Kafka at {dead}"),
        ("redis.yaml", {"redis": {"url": f"redis://{dead}/0", "key_prefix": "x"}}, f"Redis at redis://{dead}/0"),
    ):
        path = stack.config_file(name, **override)
        started = time.monotonic()
        rc, err = _wait(stack.cli(path, "--start-wait", "2s"), 60)
        lines = err.strip().splitlines()
        assert rc == 1, err
        assert lines[-1].startswith(f"python -m jobs.sample_join run: error: {words} unreachable after 2 s: "), err
        assert all(line.startswith("{") for line in lines[:-1]), err  # the rest: JSON log lines
        assert time.monotonic() - started < 30
    # the Redis wait shows its progress from the first refusal on (Kafka's first probe takes the 2 s)
    assert f'"waiting for Redis at redis://{dead}/0 (0 s of 2 s)"' in err


def test_a_redis_that_may_evict_keys_is_refused_at_start(stack: Stack, tmp_path: Path) -> None:
    from devstack.stack import start_redis

    server = start_redis(free_port(), tmp_path / "redis.log")
    try:
        client = redis.Redis.from_url(server.address)
        client.config_set("maxmemory", "64mb")
        client.config_set("maxmemory-policy", "allkeys-lru")
        rc, err = _wait(stack.cli(stack.config_file(redis={"url": server.address, "key_prefix": "x"})), 60)
        assert rc == 1
        assert err.strip().splitlines()[-1] == (
            f"python -m jobs.sample_join run: error: Redis at {server.address} may evict keys (maxmemory 67108864, "
            "maxmemory-policy allkeys-lru): checkpoints and the model registry would vanish under memory pressure; "
            "set maxmemory-policy noeviction"
        )
    finally:
        server.stop()


def test_state_keys_carry_a_bounded_ttl(stack: Stack) -> None:
    stack.generate(300, seed=2)
    config = stack.config(local={"exit_when_idle": None})
    runtime = EmbeddedRuntime(config)
    runtime.connect()
    timer = threading.Timer(8.0, runtime.request_stop)
    timer.start()
    try:
        runtime.run()
    finally:
        timer.cancel()
    client = redis.Redis.from_url(stack.redis_url)
    keys = list(client.scan_iter(match=f"{stack.key_prefix}:*:s:*"))
    assert keys, "pending requests should be checkpointed"
    horizon_ms = 600_000
    for key in keys[:50]:
        ttl = client.pttl(key)
        assert 0 < ttl <= horizon_ms + 60_000 + 3_600_000
    metas = list(client.scan_iter(match=f"{stack.key_prefix}:*:meta"))
    assert len(metas) == stack.partitions


def _start_durable_redis(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    import shutil

    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_connect_timeout=0.5).ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


@pytest.mark.slow
def test_redis_and_broker_dropping_out_while_running_lose_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis goes away for 3 s (and comes back with its data), then the broker stalls for 3 s."""
    import logging

    from devstack.stack import start_broker

    broker = start_broker(free_port(), tmp_path / "broker.log")
    port = free_port()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    server = _start_durable_redis(redis_dir, port)
    try:
        stack = Stack(broker.address, f"redis://127.0.0.1:{port}/0", 3, tmp_path)
        writer = threading.Thread(target=lambda: stack.generate(6000, seed=21, speedup=60.0, rate=20.0), daemon=True)
        runtime = EmbeddedRuntime(stack.config(checkpoint={"interval": "300ms"}, local={"exit_when_idle": "8s"}))
        runtime.connect()
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.setdefault("summary", runtime.run()), daemon=True)
        caplog.set_level(logging.WARNING, logger="jobs.runtime")
        writer.start()
        runner.start()
        time.sleep(5)  # joined the group; events flowing
        server.terminate()
        server.wait(10)
        time.sleep(3)
        server = _start_durable_redis(redis_dir, port)
        time.sleep(2)
        os.kill(broker.pid, signal.SIGSTOP)
        time.sleep(3)
        os.kill(broker.pid, signal.SIGCONT)
        writer.join(120)
        runner.join(180)
        assert not runner.is_alive() and "summary" in result
        assert result["summary"].finished_input
        assert any("redis unavailable, retrying" in r.getMessage() for r in caplog.records)
        want, _ = stack.contract()
        got_list = stack.samples()
        _assert_same_samples(_by_id(got_list), want)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(broker.pid, signal.SIGCONT)
        broker.stop()
        server.kill()
        server.wait(10)
