"""Soak run of the loop: ``python -m jobs.bench.soak`` (``make soak``).

Starts its own broker and redis-server on free loopback ports, then runs the generator at a fixed
rate (event time paced 1:1 to wall time) into the event topics and the embedded runtime
(``run --engine local``, a child process) out of them, for a bounded time. Every ``--every`` it
samples the runtime's memory (RSS), its consumer lag, and the events and samples written so far;
at the end it compares the distinct samples with the contract's (the in-memory reference join over
the generator's events) and reports throughput, lag, memory over time and any loss. Everything it
started is stopped before it returns, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml
from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from common.cli import EXIT_FAILED, EXIT_USAGE, Parser, duration, fail, positive_int
from common.config import format_duration_ms
from common.errors import CommonError
from common.output import AtomicFile
from common.topics import create_topics
from devstack.processes import ManagedProcess, free_port
from devstack.stack import start_broker, start_redis
from jobs.config import JoinConfig
from jobs.core import SampleJoin, event_from_json
from jobs.core.local import LocalJoinRunner
from jobs.errors import JobError
from jobs.generate import GeneratorConfig, KafkaTarget
from jobs.generate import run as generate
from schemas.codec import Codec

PROG = "python -m jobs.bench.soak"
MAX_DURATION_MS = 24 * 3_600_000
WINDOW_MS, HORIZON_MS = 5_000, 20_000  # short, so that state turns over many times during a soak
# The runtime ends its input after this much silence: longer than any gap in the generator's stream
# (at most the horizon, between the last impression and its latest label), so never too early.
IDLE_END_MS = HORIZON_MS + 5_000
INPUTS = ("events.impressions", "events.feature_snapshots", "events.labels")
SAMPLES = "samples.click"
GROUP = "soak-join"


class SoakError(JobError):
    """The soak could not run (a service did not start, the runtime failed)."""


@dataclass
class Point:
    t_s: float
    rss_mb: float
    lag: int  # input records not yet committed by the runtime (it commits at each checkpoint)
    watermark_lag_s: float  # wall time minus the runtime's lowest watermark (event time ~ wall time)
    events_in: int  # input records written by the generator so far
    samples_out: int  # samples the runtime produced so far (its metrics)
    state_keys: int  # requests the runtime holds state for (its metrics)


@dataclass
class Report:
    duration_s: float
    rate: float
    partitions: int
    events: int
    expected_samples: int
    distinct_samples: int
    duplicate_samples: int
    lost_samples: int
    unexpected_samples: int
    generator_s: float  # how long the generator ran (its rate is paced to wall time)
    events_per_s: float  # over the generator's run
    samples_per_s: float  # over the whole run
    max_lag: int
    rss_mb_first: float
    rss_mb_max: float
    rss_mb_last: float
    runtime_exit: int
    points: list[Point] = field(default_factory=list)
    services: dict[str, int] = field(default_factory=dict)  # name -> pid (all stopped on return)

    def format_human(self) -> str:
        lines = [f"{'t (s)':>7} {'RSS MB':>8} {'lag':>8} {'wm lag s':>9} {'events':>9} {'samples':>9} {'keys':>7}"]
        lines += [f"{p.t_s:7.1f} {p.rss_mb:8.1f} {p.lag:8d} {p.watermark_lag_s:9.1f} {p.events_in:9d} "
                  f"{p.samples_out:9d} {p.state_keys:7d}" for p in self.points]
        lines += [
            f"soak: {self.duration_s:.0f} s at {self.rate:g} impressions/s, {self.partitions} partitions; "
            f"{self.events} events in {self.generator_s:.0f} s ({self.events_per_s:,.0f}/s), "
            f"{self.distinct_samples} distinct samples ({self.samples_per_s:,.0f}/s over the run)",
            f"  loss: {self.lost_samples} of {self.expected_samples} expected samples missing, "
            f"{self.unexpected_samples} unexpected, {self.duplicate_samples} duplicates (deduplicated downstream)",
            f"  lag: max {self.max_lag} records (uncommitted: the runtime commits at each checkpoint); "
            f"RSS: at the first events {self.rss_mb_first:.1f} MB, max {self.rss_mb_max:.1f} MB, "
            f"last {self.rss_mb_last:.1f} MB; runtime exit {self.runtime_exit}",
        ]
        return "\n".join(lines)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


T = TypeVar("T")


def _retried(query: Callable[[], T], retry_for_s: float = 30.0) -> T:
    """``query()``, retried while a fresh broker has no partition leader or group coordinator yet."""
    deadline = time.monotonic() + retry_for_s
    while True:
        try:
            return query()
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Offsets:
    """High watermarks of the input topics and the runtime group's committed offsets, through one consumer."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
        self.inputs = [TopicPartition(t, p) for t in INPUTS for p in range(partitions)]

    def high(self, parts: list[TopicPartition]) -> int:
        """Records written to ``parts``."""
        watermarks = self.consumer.get_watermark_offsets
        return _retried(lambda: sum(watermarks(tp, timeout=5, cached=False)[1] for tp in parts))

    def lag(self, written: int) -> int:
        committed = _retried(lambda: self.consumer.committed(self.inputs, timeout=10))
        return max(0, written - sum(max(tp.offset, 0) for tp in committed))

    def close(self) -> None:
        self.consumer.close()


def scrape(port: int) -> dict[str, float]:
    """The runtime's Prometheus metrics, summed over labels (empty when it does not answer yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def read_sample_ids(bootstrap: str, partitions: int) -> list[str]:
    codec = Codec.default()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"soak-reader-{uuid.uuid4().hex}",
                         "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(SAMPLES, p, 0) for p in range(partitions)])
        ids, ended, deadline = [], 0, time.monotonic() + 120
        while ended < partitions and time.monotonic() < deadline:
            for msg in consumer.consume(2000, 0.5):
                if msg.error():
                    ended += 1
                else:
                    ids.append(codec.decode(msg.value() or b"", "Sample")["sample_id"])
        return ids
    finally:
        consumer.close()


def expected_sample_ids(events_file: Path, join_config: JoinConfig) -> set[str]:
    runner = LocalJoinRunner(SampleJoin(join_config))
    with events_file.open("rb") as fh:
        for line in fh:
            runner.process(event_from_json(json.loads(line)))
    runner.finish()
    return {s.sample_id for s in runner.samples}


def soak(duration_ms: int, rate: float, every_s: float, partitions: int, workdir: Path) -> Report:
    """Run the loop for ``duration_ms`` of generator time at ``rate`` impressions/s and report."""
    services: list[ManagedProcess] = []
    runtime: subprocess.Popen[bytes] | None = None
    try:
        services.append(start_broker(free_port(), workdir / "broker.log"))
        services.append(start_redis(free_port(), workdir / "redis.log"))
        bootstrap, redis_url = services[0].address, services[1].address
        metrics_port = free_port()
        create_topics(bootstrap, {t: (partitions, 0) for t in INPUTS})
        # durations as text with their unit: a config file refuses a bare number
        window, horizon = format_duration_ms(WINDOW_MS), format_duration_ms(HORIZON_MS)
        config = {
            "join": {"tasks": [{"name": "click", "window": window, "horizon": horizon, "snapshot_wait": "3s"}],
                     "idleness": "5s"},
            "kafka": {"bootstrap_servers": bootstrap, "group_id": GROUP},
            "redis": {"url": redis_url},
            "checkpoint": {"interval": "2s"},
            "local": {"exit_when_idle": format_duration_ms(IDLE_END_MS)},
            "metrics": {"port": metrics_port},
        }
        config_file = workdir / "soak.yaml"
        config_file.write_text(yaml.safe_dump(config))
        with (workdir / "runtime.log").open("wb") as log:
            runtime = subprocess.Popen(
                [sys.executable, "-m", "jobs.sample_join", "run", "--engine", "local", "--config", str(config_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        impressions = max(1, int(rate * duration_ms / 1000))
        gen_cfg = GeneratorConfig(impressions=impressions, rate=rate, window_ms=WINDOW_MS, horizon_ms=HORIZON_MS,
                                  delay_mean_ms=2_000, beyond_horizon_fraction=0.0, snapshot_max_delay_ms=1_000,
                                  conversion_rate=0.0, like_rate=0.0,  # their labels come minutes later
                                  disorder_ms=1_000, seed=1, start_ms=int(time.time() * 1000))
        events_file = workdir / "events.jsonl"
        failure: list[BaseException] = []

        generator_s: list[float] = []

        def produce() -> None:
            t0 = time.monotonic()
            try:
                generate(gen_cfg, out=str(events_file), kafka=KafkaTarget(bootstrap), speedup=1.0)
            except BaseException as exc:
                failure.append(exc)
            generator_s.append(time.monotonic() - t0)

        generator = threading.Thread(target=produce, name="soak-generator", daemon=True)
        offsets = Offsets(bootstrap, partitions)
        points: list[Point] = []
        started = time.monotonic()
        generator.start()
        deadline = started + duration_ms / 1000 * 3 + (HORIZON_MS + IDLE_END_MS) / 1000 + 120

        def measure(metrics: dict[str, float]) -> None:
            written = offsets.high(offsets.inputs)
            points.append(Point(
                round(time.monotonic() - started, 1), round(rss_mb(runtime.pid), 1), offsets.lag(written),
                round(metrics.get("sample_join_watermark_lag_seconds", 0.0), 1), written,
                int(metrics.get("sample_join_samples_out_total", 0)), int(metrics.get("sample_join_state_keys", 0)),
            ))

        try:
            last: dict[str, float] = {}
            while runtime.poll() is None and time.monotonic() < deadline:
                last = scrape(metrics_port) or last
                measure(last)
                if failure:
                    raise SoakError(f"the generator failed: {failure[0]}")
                time.sleep(every_s)
        finally:
            offsets.close()
        if runtime.poll() is None:
            raise SoakError(f"the runtime did not finish within {deadline - started:.0f} s (see {workdir}/runtime.log)")
        generator.join(60)
        if generator.is_alive() or failure:
            raise SoakError(f"the generator did not finish: {failure[0] if failure else 'still running'}")
        elapsed = time.monotonic() - started
        got = read_sample_ids(bootstrap, partitions)
        want = expected_sample_ids(events_file, JoinConfig.model_validate(config["join"]))
        distinct = set(got)
        events = points[-1].events_in if points else 0
        return Report(
            duration_s=round(elapsed, 1), rate=rate, partitions=partitions, events=events,
            expected_samples=len(want), distinct_samples=len(distinct), duplicate_samples=len(got) - len(distinct),
            lost_samples=len(want - distinct), unexpected_samples=len(distinct - want),
            generator_s=round(generator_s[0], 1), events_per_s=round(events / generator_s[0], 1),
            samples_per_s=round(len(distinct) / elapsed, 1),
            max_lag=max((p.lag for p in points), default=0),
            rss_mb_first=next((p.rss_mb for p in points if p.events_in and p.rss_mb), 0.0),
            rss_mb_max=max((p.rss_mb for p in points), default=0.0),
            rss_mb_last=next((p.rss_mb for p in reversed(points) if p.rss_mb), 0.0),
            runtime_exit=runtime.returncode, points=points,
            services={**{s.name: s.pid for s in services}, "runtime": runtime.pid},
        )
    finally:
        if runtime is not None and runtime.poll() is None:
            runtime.terminate()
            try:
                runtime.wait(30)
            except subprocess.TimeoutExpired:
                runtime.kill()
                runtime.wait()
        for service in reversed(services):
            service.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=duration, metavar="DURATION", default="2m",
                        help=f"generator run time, at most {format_duration_ms(MAX_DURATION_MS)}")
    parser.add_argument("--rate", type=float, default=300.0, help="impressions per second")
    parser.add_argument("--every", type=duration, metavar="DURATION", default="5s", help="sampling interval")
    parser.add_argument("--partitions", type=positive_int, default=2, metavar="N", help="partitions of each topic")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON (default: none)")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="keep logs and events here (default: a temporary dir)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    duration_ms, every_s = args.duration, args.every / 1000
    if not 0 < duration_ms <= MAX_DURATION_MS or args.rate <= 0 or every_s <= 0:
        return fail(PROG, f"need 0 < --duration <= {format_duration_ms(MAX_DURATION_MS)}, --rate > 0 and --every > 0",
                    EXIT_USAGE)
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            report = soak(duration_ms, args.rate, every_s, args.partitions, workdir)
    except (JobError, CommonError, OSError) as exc:
        return fail(PROG, exc, EXIT_FAILED)
    print(report.format_human())
    if args.json:
        with AtomicFile(args.json) as out:
            out.write(json.dumps(asdict(report), indent=1).encode())
            out.commit()
    return 0 if report.lost_samples == 0 and report.unexpected_samples == 0 and report.runtime_exit == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
