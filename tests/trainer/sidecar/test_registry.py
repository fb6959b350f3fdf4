"""The registry in a real redis-server: versions, the pointer, notices, `versions` and `rollback`; every
change also on disk (the records, current.json)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from trainer.__main__ import main
from trainer.sidecar.errors import RegistryError
from trainer.sidecar.registry import Registry, write_registry_file
from trainer.sidecar.versions import VersionStore

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(redis_url: str, tmp_path: Path) -> Registry:
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    write_registry_file(tmp_path, prefix)
    store = VersionStore(tmp_path, keep=5)
    return Registry(redis_url, prefix, store, retry_for_s=5.0, clock_ms=lambda: 1_700_000_000_000)


def add(registry: Registry, version: int, status: str = "published", auc: float = 0.7) -> None:
    """A version directory (the registry reads no model) and its record, published when it says so."""
    registry.store.path(version).mkdir(parents=True, exist_ok=True)
    record = {"version": version, "status": status, "metrics": {"auc": auc}, "samples_trained": 100 * version}
    registry.publish(record) if status == "published" else registry.add(record)


def notices_of(registry: Registry) -> Any:
    pubsub = registry.client.pubsub()
    pubsub.subscribe(registry.channel)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    return pubsub


def next_notice(pubsub: Any) -> dict[str, Any]:
    message = pubsub.get_message(timeout=5)
    assert message is not None and message["type"] == "message"
    return json.loads(message["data"])


def test_publish_and_rollback_move_the_pointer_with_a_notice(registry: Registry) -> None:
    pubsub = notices_of(registry)
    add(registry, 1)
    add(registry, 2, "refused", auc=0.5)
    add(registry, 3)
    assert [next_notice(pubsub)["current"] for _ in range(2)] == [1, 3]
    notice = registry.rollback(reason="test")
    assert notice == next_notice(pubsub)
    assert (notice["event"], notice["current"], notice["previous"]) == ("rolled_back", 1, 3)
    assert registry.current() == 1
    assert [r["status"] for r in registry.versions()] == ["published", "refused", "rolled_back"]
    assert registry.versions()[0]["created_ms"] == 1_700_000_000_000
    # the disk holds the same: each version's record in its directory, and the pointer
    assert [registry.store.read_record(v) for v in (1, 2, 3)] == registry.versions()
    assert registry.store.read_current() == 1


def test_rollback_refuses_what_it_cannot_do(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="no current version"):
        registry.rollback()
    add(registry, 1)
    with pytest.raises(RegistryError, match="no published version before"):
        registry.rollback()
    add(registry, 2, "refused")
    with pytest.raises(RegistryError, match="version 2 is refused"):
        registry.rollback(to=2)
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.rollback(to=9)
    add(registry, 3)
    registry.store.path(1).rename(registry.store.path(1).with_name("gone"))
    with pytest.raises(RegistryError, match="version 1 is no longer on disk"):
        registry.rollback()


def test_versions_and_rollback_commands(registry: Registry, redis_url: str, tmp_path: Path, capsys) -> None:
    for v in (1, 2, 3):
        add(registry, v)
    base = ["--redis-url", redis_url, "--model-dir", str(tmp_path)]
    capsys.readouterr()
    assert main(["versions", *base, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["current"] == 3
    assert [(v["version"], v["status"], v["samples_trained"]) for v in listed["versions"]] == [
        (1, "published", 100),
        (2, "published", 200),
        (3, "published", 300),
    ]
    assert all("metrics" in v for v in listed["versions"])
    assert main(["rollback", *base, "--to", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["current"] == 1
    assert registry.current() == 1 and registry.version(3)["status"] == "rolled_back"
    assert registry.store.read_current() == 1 and registry.store.read_record(3)["status"] == "rolled_back"
    assert main(["versions", *base]) == 0
    table = capsys.readouterr().out
    assert "rolled_back" in table and "*" in table
    assert main(["rollback", *base, "--to", "1"]) == 1
    assert "already current" in capsys.readouterr().err


def test_commands_fail_with_one_line(redis_url: str, tmp_path: Path, capsys) -> None:
    assert main(["versions", "--redis-url", redis_url, "--model-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err.strip()
    assert "not a sidecar model directory" in err and "\n" not in err
    write_registry_file(tmp_path, "x")
    free = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"] + 1  # nothing listens there
    assert main(["versions", "--redis-url", f"redis://127.0.0.1:{free}/0", "--model-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "Redis registry" in err and "\n" not in err
    assert main(["rollback", "--model-dir", str(tmp_path)]) == 2  # neither --config nor --redis-url
    err = capsys.readouterr().err.strip()
    assert "give --config YAML" in err and "\n" not in err
