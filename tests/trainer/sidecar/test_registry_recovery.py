"""Disk is the source of truth: a registry lost in Redis (flushed, an empty Redis, Redis down when a
version is registered) is rebuilt from the version directories and nothing is deleted; `trainer
registry rebuild`, `versions --config` with a password; what the trainer checks of Redis and Kafka
at start. Real redis-servers (private ones where a test flushes, stops or reconfigures them), the
real broker, real TF."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from sidecar_helpers import SidecarEnv, make_env, produce
from stream import stream

from devstack.processes import ManagedProcess, free_port
from devstack.stack import start_redis
from trainer.__main__ import main
from trainer.sidecar.registry import UNJUDGED, Registry, write_registry_file
from trainer.sidecar.versions import RECORD_PATH, VersionStore

pytestmark = pytest.mark.integration

# The gate judges nothing here (these tests are about the registry, not the gate): every threshold off,
# so that each version is published and there is a current pointer to lose and restore.
NO_THRESHOLDS = {
    "min_auc": None,
    "min_prediction_bias": None,
    "max_prediction_bias": None,
    "max_auc_drop": None,
    "max_logloss_increase": None,
    "max_bias_shift": None,
}
SECRET = "registry-secret-7f3a"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[[], ManagedProcess]]:
    """Factory of redis-servers of this test only (flushed, stopped or reconfigured at will)."""
    started: list[ManagedProcess] = []

    def start() -> ManagedProcess:
        server = start_redis(free_port(), tmp_path / f"redis-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def flush(url: str, password: str | None = None) -> None:
    client = redis.Redis.from_url(url, password=password)
    client.flushall()
    client.close()


def stderr_lines(stderr: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON log lines and the other lines of a `trainer run`'s stderr."""
    logs, other = [], []
    for line in stderr.splitlines():
        try:
            logs.append(json.loads(line))
        except ValueError:
            other.append(line)
    return logs, other


def listed(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["versions", "--config", str(config), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_flushed_or_empty_redis_is_rebuilt_from_disk_at_start_and_nothing_is_deleted(
    kafka_bootstrap: str, private_redis, tmp_path: Path, capsys
) -> None:
    first, empty = private_redis(), private_redis()
    env: SidecarEnv = make_env(
        kafka_bootstrap,
        first.address,
        tmp_path,
        **{
            "sidecar.batch.size": 32,
            "sidecar.export_interval": "1s",
            "sidecar.gate.thresholds": NO_THRESHOLDS,
            "sidecar.keep_versions": 50,  # retention out of the way: every version of the first run stays on disk
        },
    )
    produce(env.bootstrap, env.topic, stream(1200, seed=21, users=20, items=10))
    result = env.run("--exit-when-idle", "2s")
    assert result.returncode == 0, result.stderr[-3000:]
    before, current = env.versions(), env.current()
    assert before and current is not None
    # An export cut short between its rename and its record, and a temporary export directory.
    cut_short = before[-1]["version"] + 1
    shutil.copytree(env.model_dir / str(before[-1]["version"]), env.model_dir / str(cut_short))
    (env.model_dir / str(cut_short) / RECORD_PATH).unlink()
    (env.model_dir / f".{cut_short + 1}.tmp-999").mkdir()
    versions_on_disk = sorted(int(p.name) for p in env.model_dir.iterdir() if p.name.isdigit())
    assert versions_on_disk == [*(r["version"] for r in before), cut_short]

    flush(first.address)
    result = env.run("--exit-when-idle", "2s")
    assert result.returncode == 0, result.stderr[-3000:]
    logs, _ = stderr_lines(result.stderr)
    restored = [line["restored"] for line in logs if line["msg"].startswith("registry restored from disk")]
    assert len(restored) == 1, logs  # one line names what was re-registered
    assert restored[0]["reregistered"] == [r["version"] for r in before] and restored[0]["unjudged"] == [cut_short]
    assert restored[0]["current"] == current and restored[0]["current_restored"]
    assert sorted(int(p.name) for p in env.model_dir.iterdir() if p.name.isdigit()) == versions_on_disk
    assert not (env.model_dir / f".{cut_short + 1}.tmp-999").exists()
    assert env.current() == current
    after = env.versions()
    assert after[:-1] == before
    assert (after[-1]["version"], after[-1]["status"], after[-1]["samples_trained"]) == (cut_short, UNJUDGED, None)
    shown = listed(env.config_path, capsys)
    assert shown["current"] == current and shown["unregistered"] == []
    assert [r["version"] for r in shown["versions"]] == versions_on_disk
    assert main(["versions", "--config", str(env.config_path)]) == 0
    assert UNJUDGED in capsys.readouterr().out

    # Another, empty Redis (a failover without the data): the same, without a flush.
    result = env.run("--exit-when-idle", "2s", "--redis-url", empty.address)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(int(p.name) for p in env.model_dir.iterdir() if p.name.isdigit()) == versions_on_disk
    shown = listed(env.config_path, capsys, "--redis-url", empty.address)
    assert shown["current"] == current and shown["versions"] == after


def test_redis_down_when_a_version_is_registered_keeps_it_and_the_next_start_registers_it(
    kafka_bootstrap: str, private_redis, tmp_path: Path
) -> None:
    from trainer.config import TrainerConfig
    from trainer.export import ExportedModel
    from trainer.samples import SampleTable, parse_sample
    from trainer.sidecar.errors import Unavailable
    from trainer.sidecar.loop import Sidecar
    from trainer.sidecar.metrics import SidecarMetrics
    from trainer.sidecar.publishing import Candidate, Publisher
    from trainer.state import TrainerState

    lost, next_start = private_redis(), private_redis()
    env = make_env(kafka_bootstrap, next_start.address, tmp_path, **{"sidecar.gate.thresholds": NO_THRESHOLDS})
    config = TrainerConfig.load(env.config_path)
    table = SampleTable([parse_sample(s) for s in stream(300, seed=22, users=10, items=5)])
    state = TrainerState.create(config, table)
    store = VersionStore(env.model_dir, keep=5)
    registry = Registry(lost.address, env.prefix, store, retry_for_s=1.0)
    publisher = Publisher(config.sidecar, registry, store, SidecarMetrics("t"))
    # no matured evidence yet: nothing speaks against version 1, the gate publishes it
    assert publisher.export_and_gate(state, Candidate(1, len(table), {0: len(table)}))["status"] == "published"
    lost.stop()  # Redis goes away between the export and the registration of version 2
    with pytest.raises(Unavailable, match="Redis registry"):
        publisher.export_and_gate(state, Candidate(2, 2 * len(table), {0: 2 * len(table)}))
    record = store.read_record(2)
    assert record is not None and record["status"] == "published" and record["samples_trained"] == 2 * len(table)
    assert store.read_current() == 2
    store.export(state, 3)  # and a crash between an export and its record
    registry.close()

    sidecar = Sidecar(config)
    sidecar.open()  # the next start, against another Redis that knows nothing
    try:
        statuses = [(r["version"], r["status"]) for r in env.versions()]
        assert statuses == [(1, "published"), (2, "published"), (3, UNJUDGED)]
        assert env.current() == 2 and sidecar.publisher.current == 2
        assert store.on_disk() == [1, 2, 3]
    finally:
        sidecar.close()
    ExportedModel(store.path(2))  # the record in assets.extra does not disturb the SavedModel


def test_registry_rebuild_and_versions_read_the_password_from_the_config(
    private_redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    server = private_redis()
    admin = redis.Redis.from_url(server.address)
    admin.config_set("requirepass", SECRET)
    admin.close()
    model_dir, task = tmp_path / "model", f"t{uuid.uuid4().hex[:8]}"
    prefix = f"odl:test:{task}"
    write_registry_file(model_dir, prefix)
    store = VersionStore(model_dir, keep=5)
    registry = Registry(server.address, prefix, store, password=SECRET, retry_for_s=3.0)
    for version, status in ((1, "published"), (2, "refused"), (3, "published")):
        store.path(version).mkdir(parents=True)  # the registry reads no model: empty directories will do
        record = {"version": version, "status": status, "metrics": {"auc": 0.7}, "samples_trained": 100 * version}
        registry.publish(record) if status == "published" else registry.add(record)
    registry.close()
    flush(server.address, SECRET)
    config = tmp_path / "trainer.yaml"
    sidecar = {"task": task, "model_dir": str(model_dir)}
    redis_section = {"url": server.address, "password": "${TEST_REGISTRY_PASSWORD}", "key_prefix": "odl:test"}
    config.write_text(yaml.safe_dump({"sidecar": {**sidecar, "redis": redis_section}}))
    monkeypatch.setenv("TEST_REGISTRY_PASSWORD", SECRET)

    assert main(["versions", "--redis-url", server.address, "--model-dir", str(model_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert "refused the credentials" in err and "\n" not in err  # at once, not waited out as an outage
    shown = listed(config, capsys)
    assert {k: shown[k] for k in ("current", "versions", "unregistered")} == {
        "current": None, "versions": [], "unregistered": [1, 2, 3]
    }
    assert main(["registry", "rebuild", "--config", str(config), "--json"]) == 0
    restored = json.loads(capsys.readouterr().out)
    assert restored["reregistered"] == [1, 2, 3] and restored["current"] == 3 and restored["current_restored"]
    shown = listed(config, capsys)
    assert shown["current"] == 3 and [(r["version"], r["status"]) for r in shown["versions"]] == [
        (1, "published"),
        (2, "refused"),
        (3, "published"),
    ]
    assert main(["registry", "rebuild", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "current version: 3\n"  # nothing else to restore
    assert main(["rollback", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "current version: 1 (was 3)\n"
    assert store.read_current() == 1 and store.read_record(3)["status"] == "rolled_back"
    assert SECRET not in "".join(p.read_text() for p in model_dir.rglob("*.json"))


def test_versions_and_rebuild_need_a_config_or_both_flags(tmp_path: Path, capsys) -> None:
    for argv in (["versions"], ["registry", "rebuild", "--model-dir", str(tmp_path)], ["rollback", "--redis-url", "x"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "give --config YAML" in err and "\n" not in err
    with pytest.raises(SystemExit) as info:
        main(["registry", "rebuild", "--help"])
    assert info.value.code == 0 and "--config CONFIG.yaml" in capsys.readouterr().out


def test_retention_deletes_old_versions_but_never_the_current_or_the_last_good_one(
    private_redis, tmp_path: Path
) -> None:
    from trainer.config import TrainerConfig
    from trainer.sidecar.metrics import SidecarMetrics
    from trainer.sidecar.publishing import Publisher

    server = private_redis()
    store = VersionStore(tmp_path / "model", keep=2)
    registry = Registry(server.address, "test:retention", store, retry_for_s=3.0)
    store.path(1).mkdir(parents=True)  # a version without a record: unjudged, deleted by retention only
    for version, status in ((2, "published"), (3, "published"), (4, "refused"), (5, "refused"), (6, "refused")):
        store.path(version).mkdir(parents=True)
        record = {"version": version, "status": status, "metrics": {}, "samples_trained": version}
        registry.publish(record) if status == "published" else registry.add(record)
    assert registry.restore_from_disk().unjudged == [1]
    publisher = Publisher(TrainerConfig().sidecar, registry, store, SidecarMetrics("t"))
    publisher.sync_current()
    assert publisher.protected() == {3, 2}
    assert store.prune(publisher.protected()) == [1, 4]
    assert store.on_disk() == [2, 3, 5, 6]
    flush(server.address)  # Redis emptied while the trainer runs: its next look at the pointer restores it
    publisher.sync_current()
    assert registry.current() == 3 and [r["version"] for r in registry.versions()] == [2, 3, 5, 6]


def test_an_evicting_redis_is_refused_at_start_with_one_line(
    kafka_bootstrap: str, private_redis, tmp_path: Path
) -> None:
    server = private_redis()
    client = redis.Redis.from_url(server.address)
    client.config_set("maxmemory", "100mb")
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()
    env = make_env(kafka_bootstrap, server.address, tmp_path)
    result = env.run()
    assert result.returncode == 1
    _, other = stderr_lines(result.stderr)
    assert len(other) == 1 and other[0].startswith("python -m trainer run: error: Redis at ")
    assert "may evict keys" in other[0]
    assert "maxmemory-policy allkeys-lru" in other[0]


@pytest.mark.parametrize("service", ["redis", "kafka"])
def test_an_unreachable_service_at_start_is_one_line_after_the_start_wait(
    service: str, kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    env = make_env(kafka_bootstrap, redis_url, tmp_path, **{"sidecar.start_wait": "5s"})
    nowhere = f"127.0.0.1:{free_port()}"
    if service == "redis":
        flag, what = ["--redis-url", f"redis://{nowhere}/0"], f"Redis at redis://{nowhere}/0"
    else:
        flag, what = ["--bootstrap-servers", nowhere], f"Kafka at {nowhere}"
    started = time.monotonic()
    result = env.run(*flag, timeout_s=120)
    took = time.monotonic() - started
    assert result.returncode == 1
    logs, other = stderr_lines(result.stderr)
    assert [line for line in logs if line["msg"].startswith(f"waiting for {what} (")], logs
    assert len(other) == 1 and other[0].startswith(f"python -m trainer run: error: {what} unreachable after 5 s"), other
    assert took < 60  # not the 2 minutes of retries (retry_for) meant for an outage while running
