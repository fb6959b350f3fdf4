"""Failures the sidecar survives: an export that cannot be written, Redis and the broker unreachable."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sidecar_helpers import make_env, produce, wait_for
from stream import stream

from devstack.processes import free_port
from devstack.stack import start_broker, start_redis
from trainer.config import TrainerConfig
from trainer.samples import SampleTable, parse_sample
from trainer.sidecar.errors import ExportFailed
from trainer.sidecar.metrics import SidecarMetrics
from trainer.sidecar.publishing import Candidate, Publisher
from trainer.sidecar.registry import Registry
from trainer.sidecar.versions import VersionStore

pytestmark = pytest.mark.integration


class FileSizeLimit:
    """Writes beyond ``limit`` bytes fail with EFBIG, as on a full disk (root ignores permissions)."""

    def __init__(self, limit: int):
        self.limit = limit

    def __enter__(self) -> None:
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE)
        self.handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, self.saved[1]))

    def __exit__(self, *exc: object) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved)
        signal.signal(signal.SIGXFSZ, self.handler)


def test_a_failed_export_is_a_clear_error_and_the_current_version_stays(redis_url: str, tmp_path: Path) -> None:
    from trainer.state import TrainerState

    config = TrainerConfig.load(None, {"model.hidden_units": [8], "features.vocab.capacity": 64})
    table = SampleTable([parse_sample(s) for s in stream(100, seed=1, users=10, items=5)])
    state = TrainerState.create(config, table)
    store = VersionStore(tmp_path / "model", keep=3)
    registry = Registry(redis_url, f"test:{uuid.uuid4().hex[:8]}", store, retry_for_s=5.0)
    store.export(state, 1)
    registry.publish({"version": 1, "status": "published", "metrics": {}, "samples_trained": 0})
    publisher = Publisher(config.sidecar, registry, store, SidecarMetrics("t"))
    publisher.sync_current()
    with FileSizeLimit(4096), pytest.raises(ExportFailed, match=f"cannot export version 2 to {tmp_path}"):
        store.export(state, 2)
    with FileSizeLimit(4096):
        assert publisher.export_and_gate(state, Candidate(2, len(table), {0: len(table)})) is None
    assert registry.current() == 1 and [r["version"] for r in registry.versions()] == [1]
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["1", "current.json"]  # nothing half-written
    record = publisher.export_and_gate(state, Candidate(2, len(table), {0: len(table)}))  # the disk has room again
    assert record is not None and (tmp_path / "model" / "2" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_redis_and_the_broker_unreachable_for_a_few_seconds_lose_nothing(tmp_path: Path, processes) -> None:
    broker = start_broker(free_port(), tmp_path / "broker.log")
    redis_server = start_redis(free_port(), tmp_path / "redis.log")
    try:
        env = make_env(broker.address, redis_server.address, tmp_path, **{"sidecar.batch.size": 32})
        samples = stream(2500, seed=9, users=20, items=10)
        produce(env.bootstrap, env.topic, samples)
        proc = env.start("--exit-when-idle", "5s")
        processes.append(proc)

        def trained() -> int:
            try:
                return json.loads((env.model_dir / "checkpoints" / "sidecar.json").read_text())["samples_trained"]
            except (OSError, ValueError):
                return 0

        for service, fraction in ((redis_server, 0.2), (broker, 0.5)):
            wait_for(lambda f=fraction: proc.poll() is not None or trained() >= f * len(samples), 240, "progress")
            os.killpg(service.pid, signal.SIGSTOP)  # unreachable: connections hang
            time.sleep(4)  # the outage lasts this long
            os.killpg(service.pid, signal.SIGCONT)
        try:
            assert proc.wait(300) == 0
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # the stacks go to the log, for the failure report
            time.sleep(1)
            raise
        versions = env.versions()
        assert versions[-1]["samples_trained"] == len({s["sample_id"] for s in samples})
    finally:
        broker.stop()
        redis_server.stop()
