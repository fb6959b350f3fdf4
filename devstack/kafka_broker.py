"""The local Apache Kafka broker: a single KRaft node (broker + controller) run from Maven Central jars.

`infra/fetch_jars.sh` (called by `make setup`) puts `kafka_2.13` with its runtime dependencies and a
log4j2 backend into `.jvm/kafka/`. This module writes the node's `server.properties`, formats its
storage once (`kafka.tools.StorageTool format --standalone`) and gives the command line of the broker
(`kafka.Kafka server.properties`); :func:`devstack.stack.start_broker` runs it.

Everything lives in one broker folder: `server.properties`, `controller.port` (the controller's
port, chosen on first start and kept: the formatted storage records it as the quorum's only voter)
and `data/` (the log directory). A restarted broker keeps its topics and offsets.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from devstack.errors import DevStackError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
JVM_DIR = PROJECT_ROOT / ".jvm"
KAFKA_JARS = JVM_DIR / "kafka"
LOG4J2_CONFIG = PROJECT_ROOT / "infra" / "jvm" / "log4j2.properties"
HEAP = ("-Xms128m", "-Xmx512m")

# Internal topics: one replica, few partitions (first group join and transaction are quick).
INTERNAL_TOPICS = {
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "4",
}


def kafka_classpath() -> str:
    """The broker's classpath (a JVM wildcard over `.jvm/kafka/`); a one-line error when missing."""
    if not any(KAFKA_JARS.glob("kafka_2.13-*.jar")):
        raise DevStackError(f"the local broker needs Apache Kafka's jars in {KAFKA_JARS}; run 'make setup' "
                         "(or 'bash infra/fetch_jars.sh')")
    return str(KAFKA_JARS / "*")


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    path = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not path or not Path(path).exists():
        raise DevStackError("the local broker needs Java 17; install it (apt-get install openjdk-17-jre-headless)")
    return path


def server_properties(port: int, controller_port: int, data_dir: Path) -> dict[str, str]:
    """Settings of a single-node KRaft cluster on loopback."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir.resolve()),
        "num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        **INTERNAL_TOPICS,
    }


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as `random-uuid`), never
    starting with '-' (the storage tool would read it as an option; Kafka's own ids avoid it too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def java_command(main_class: str, *args: str) -> list[str]:
    return [java_binary(), *HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}", "-cp", kafka_classpath(), main_class, *args]


def prepare(broker_dir: Path, port: int, free_port: Callable[[], int]) -> Path:
    """Write `server.properties` for `port` and format the storage on first use; returns the file."""
    broker_dir.mkdir(parents=True, exist_ok=True)
    data_dir = broker_dir / "data"
    port_file = broker_dir / "controller.port"
    formatted = (data_dir / "meta.properties").is_file() and port_file.is_file()
    controller_port = int(port_file.read_text()) if formatted else free_port()
    properties = broker_dir / "server.properties"
    properties.write_text("".join(f"{k}={v}\n" for k, v in server_properties(port, controller_port, data_dir).items()))
    if formatted:
        return properties
    shutil.rmtree(data_dir, ignore_errors=True)
    result = subprocess.run(
        java_command("kafka.tools.StorageTool", "format", "--standalone", "--cluster-id", random_cluster_id(),
                     "--config", str(properties)),
        capture_output=True, text=True, check=False, timeout=120,
    )
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise DevStackError(f"cannot format the broker's storage in {data_dir}: {last}")
    port_file.write_text(str(controller_port))
    return properties
