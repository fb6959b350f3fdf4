"""The local Apache Kafka broker's settings (pure) and its storage formatting (real storage tool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import kafka_broker
from devstack.errors import DevStackError


def test_single_node_settings_stay_on_loopback_with_one_replica(tmp_path: Path) -> None:
    props = kafka_broker.server_properties(19092, 19093, tmp_path / "data")
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.dirs"] == str((tmp_path / "data").resolve())
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "1"


def test_cluster_ids_are_kafka_uuids_that_never_look_like_an_option() -> None:
    ids = {kafka_broker.random_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_storage_is_formatted_once_and_keeps_its_controller_port(tmp_path: Path) -> None:
    ports = iter([41001, 41002])
    first = kafka_broker.prepare(tmp_path / "broker", 40000, lambda: next(ports))
    meta = (tmp_path / "broker" / "data" / "meta.properties").read_text()
    assert "cluster.id=" in meta and "41001" in first.read_text()
    second = kafka_broker.prepare(tmp_path / "broker", 40010, lambda: next(ports))
    assert (tmp_path / "broker" / "data" / "meta.properties").read_text() == meta  # not formatted again
    text = second.read_text()
    assert "CONTROLLER://127.0.0.1:41001" in text and "PLAINTEXT://127.0.0.1:40010" in text


def test_missing_jars_are_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kafka_broker, "KAFKA_JARS", tmp_path / "kafka")
    with pytest.raises(DevStackError, match="run 'make setup'") as error:
        kafka_broker.kafka_classpath()
    assert "\n" not in str(error.value)
