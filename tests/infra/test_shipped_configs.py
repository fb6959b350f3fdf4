"""The jobs-side shipped configs, each run from its file as shipped.

`infra/sample_join.yaml` (the embedded join), `infra/flink/sample-join.yaml` (the Flink image's job, on
the MiniCluster here) and `infra/flink/local/config.yaml` + `infra/flink/local/sample-join.yaml` (the
session cluster of `make flink-up` / `make flink-submit`) are loaded from the files themselves; only
addresses, ports and folders are pointed at the test's services, through the environment variables the
files document (`KAFKA_BOOTSTRAP_SERVERS`, `REDIS_URL`, `METRICS_PORT`, `FLINK_KAFKA_CONNECTOR_JAR`,
`FLINK_CHECKPOINT_DIR`) or the launcher's own flags (`--state-dir`, `--flink-rest-port`). Each run
joins a generated stream, and the samples it writes must be the contract's for that file's join
settings.

The shipped files name the shipped topics, consumer groups and Redis keys, which only a broker and a
Redis of the test's own can give them: the session's fixtures are shared by every test. So each test
starts the local stack as `make up` does (`LocalStack`, topics from `infra/topics.yaml`) on free ports
in its own state folder (a few seconds).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from common.config import _ENV as ENV_REFERENCE
from devstack.processes import free_port
from devstack.stack import LocalStack, StackState
from jobs.config import SampleJoinConfig
from tests.jobs.runtime.test_embedded import _assert_same_samples, _by_id

ROOT = Path(__file__).resolve().parents[2]
JOIN_YAML = ROOT / "infra" / "sample_join.yaml"
FLINK_IMAGE_YAML = ROOT / "infra" / "flink" / "sample-join.yaml"
FLINK_LOCAL_YAML = ROOT / "infra" / "flink" / "local" / "sample-join.yaml"
SHIPPED_FILES = (JOIN_YAML, FLINK_IMAGE_YAML, FLINK_LOCAL_YAML, ROOT / "infra" / "trainer.yaml",
                 ROOT / "infra" / "demo" / "trainer.yaml")
# Every variable the shipped files read (the loader's own ${VAR} syntax), and the folder the Flink job
# reads from the environment itself: a test's runs see only those it sets, so the files' defaults hold.
SHIPPED_VARIABLES = frozenset({"FLINK_CHECKPOINT_DIR"} | {
    m.group(1) for file in SHIPPED_FILES for line in file.read_text().splitlines()
    for m in ENV_REFERENCE.finditer(line.split(" #")[0]) if not line.lstrip().startswith("#")})
IMPRESSIONS = 1500  # ~2,200 events: every attribution and unmatched reason, a few seconds per engine

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def private_stack(state_dir: Path) -> Iterator[StackState]:
    """The local stack as `make up` starts it (its topics from infra/topics.yaml), on free ports."""
    stack = LocalStack(state_dir, free_port(), free_port(), environ={})
    started = stack.up(log=lambda _: None)
    try:
        yield started
    finally:
        stack.down(log=lambda _: None)


def shipped_env(stack: StackState, **more: str) -> dict[str, str]:
    """This process's environment with the stack's addresses, and nothing else the shipped files read."""
    env = {k: v for k, v in os.environ.items() if k not in SHIPPED_VARIABLES}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers, "REDIS_URL": stack.redis_url, **more}


def generate(stack: StackState, events: Path, *extra: str, python: str = sys.executable) -> None:
    """`python -m jobs.generate` into the shipped event topics (and `events` for the contract)."""
    done = subprocess.run(
        [python, "-m", "jobs.generate", "--bootstrap-servers", stack.kafka_bootstrap_servers,
         "--impressions", str(IMPRESSIONS), "--seed", "23", "--out", str(events), "--quiet", *extra],
        cwd=ROOT, env=shipped_env(stack), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def contract(config_file: Path, events: Path) -> dict[str, dict[str, Any]]:
    """The samples (by sample_id) of the reference runner with the file's join settings, input ended."""
    from jobs.core.events import event_from_json
    from jobs.core.join import SampleJoin
    from jobs.core.local import LocalJoinRunner

    runner = LocalJoinRunner(SampleJoin(SampleJoinConfig.load(config_file).join))
    with events.open() as fh:
        for line in fh:
            runner.process(event_from_json(json.loads(line)))
    runner.finish()
    return {s.sample_id: s.to_json() for s in runner.samples}


def samples(stack: StackState, topic: str = "samples.click") -> list[dict[str, Any]]:
    """Every record of the topic, decoded (the reader `python -m infra.cat` uses)."""
    from infra.cat import read_topics
    from schemas import Codec

    codec = Codec.default()
    return [codec.decode(value, "Sample") for *_, value in read_topics(stack.kafka_bootstrap_servers, [topic])]


def run(argv: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, f"{' '.join(argv[1:4])} exited {done.returncode}: {done.stderr[-3000:]}"
    return done


def test_the_join_runs_with_infra_sample_join_yaml_as_shipped(tmp_path: Path) -> None:
    with private_stack(tmp_path / "state") as stack:
        events = tmp_path / "events.jsonl"
        generate(stack, events)
        # bounded (--exit-when-idle): the end of the input resolves every impression, so the run ends by
        # itself with every sample written; METRICS_PORT=0 serves the metrics on any free port
        done = run([sys.executable, "-m", "jobs.sample_join", "run", "--config", str(JOIN_YAML),
                    "--exit-when-idle", "2s"], shipped_env(stack, METRICS_PORT="0"), timeout_s=180)
        got = samples(stack)
        assert len(got) == len(_by_id(got))  # one clean run: every sample once
        _assert_same_samples(_by_id(got), contract(JOIN_YAML, events))
        stopped = [json.loads(line) for line in done.stderr.splitlines() if '"embedded runtime stopped"' in line]
        assert stopped and stopped[0]["finished_input"] and stopped[0]["unmatched"] > 0
        assert stopped[0]["events_in"] == sum(1 for _ in events.open())


@pytest.mark.flink
@pytest.mark.slow
def test_the_flink_images_job_config_runs_as_shipped_on_the_minicluster(tmp_path: Path) -> None:
    """infra/flink/sample-join.yaml names the image's connector jar (/opt/flink/connectors/...), which the
    image's FLINK_KAFKA_CONNECTOR_JAR overrides as it does here with the jar of `make setup`."""
    from jobs.runtime.flink.job import DEFAULT_CONNECTOR_JAR

    with private_stack(tmp_path / "state") as stack:
        events = tmp_path / "events.jsonl"
        generate(stack, events)
        env = shipped_env(stack, FLINK_KAFKA_CONNECTOR_JAR=str(DEFAULT_CONNECTOR_JAR),
                          FLINK_CHECKPOINT_DIR=(tmp_path / "checkpoints").as_uri())
        run([sys.executable, "-m", "jobs.sample_join", "run", "--engine", "flink", "--config", str(FLINK_IMAGE_YAML),
             "--exit-when-idle", "2s"], env, timeout_s=400)
        _assert_same_samples(_by_id(samples(stack)), contract(FLINK_IMAGE_YAML, events))


def _wait_for(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _running_job(rest_url: str) -> str | None:
    with urllib.request.urlopen(f"{rest_url}/jobs/overview", timeout=5) as response:
        jobs = json.load(response)["jobs"]
    running = [j["jid"] for j in jobs if j["state"] == "RUNNING"]
    return running[0] if running else None


@pytest.mark.flink
@pytest.mark.slow
def test_the_local_session_cluster_runs_its_shipped_config_and_job(tmp_path: Path) -> None:
    """`make flink-up` + `make flink-submit` (python -m infra.local flink-up / flink-submit / flink-down):
    the cluster from infra/flink/local/config.yaml, the job from infra/flink/local/sample-join.yaml (the
    submit command's default), streaming as shipped; one far-future event per input partition then
    moves every watermark past the horizon, which resolves every real impression."""
    from tests.devstack.test_flink import _sentinels

    state, port = tmp_path / "state", free_port()
    with private_stack(state) as stack:
        events = tmp_path / "events.jsonl"
        generate(stack, events)
        env = shipped_env(stack)
        local = [sys.executable, "-m", "infra.local"]
        flags = ["--state-dir", str(state), "--flink-rest-port", str(port)]
        run([*local, "flink-up", *flags], env, timeout_s=200)
        try:
            run([*local, "flink-submit", *flags], env, timeout_s=300)
            rest_url = f"http://127.0.0.1:{port}"
            job = _wait_for("the submitted job to run", lambda: _running_job(rest_url), timeout_s=120)
            config = SampleJoinConfig.load(FLINK_LOCAL_YAML)
            topics = config.kafka.topics
            partitions = len(_partitions(stack, topics.impressions))  # the event topics are co-partitioned
            _sentinels(SimpleNamespace(events_file=events, bootstrap=stack.kafka_bootstrap_servers,
                                       partitions=partitions, impressions=topics.impressions,
                                       snapshots=topics.feature_snapshots, labels=topics.labels))
            want = contract(FLINK_LOCAL_YAML, events)
            got: dict[str, dict[str, Any]] = {}

            def complete() -> bool:
                got.clear()
                got.update(_by_id(samples(stack)))  # at-least-once: a repeat carries the same sample
                return len(got) >= len(want)

            _wait_for("every sample", complete, timeout_s=300)
            _assert_same_samples(got, want)
            urllib.request.urlopen(urllib.request.Request(f"{rest_url}/jobs/{job}?mode=cancel", method="PATCH"),
                                   timeout=10).close()
        finally:
            run([*local, "flink-down", *flags], env, timeout_s=120)
    from tests.e2e.test_demo import processes_mentioning

    assert processes_mentioning(str(state)) == []  # the cluster and the stack are gone


def _partitions(stack: StackState, topic: str) -> list[int]:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": stack.kafka_bootstrap_servers}).list_topics(topic, timeout=10)
    return sorted(metadata.topics[topic].partitions)
