"""Static checks of the Flink image (no Docker engine runs here): infra/flink/Dockerfile,
infra/flink/config.yaml and infra/flink/sample-join.yaml agree with each other and with the code."""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import parse_duration_ms
from jobs.config import SampleJoinConfig
from jobs.runtime.flink.job import CONNECTOR_ENV, CONNECTOR_JAR, CONNECTOR_URL, CONNECTOR_VERSION, UDF_ENV

ROOT = Path(__file__).resolve().parents[2]
FLINK = ROOT / "infra" / "flink"
VENV = "/opt/venv"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (FLINK / "Dockerfile").read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    return [(s.split(None, 1)[0].upper(), s.split(None, 1)[1] if " " in s else "") for s in logical]


@pytest.fixture(scope="module")
def conf() -> dict[str, Any]:
    return flatten(yaml.safe_load((FLINK / "config.yaml").read_text()))


def test_config_yaml_runs_python_in_thread_mode_from_the_images_venv(conf: dict[str, Any]) -> None:
    assert conf["python.execution-mode"] == "thread"
    assert conf["python.executable"] == f"{VENV}/bin/python"
    assert conf["python.client.executable"] == f"{VENV}/bin/python"
    assert conf["python.pythonpath"] == f"{VENV}/lib/python3.11/site-packages"


def test_config_yaml_checkpoints_with_rocksdb(conf: dict[str, Any]) -> None:
    assert conf["state.backend.type"] == "rocksdb"
    assert parse_duration_ms(conf["execution.checkpointing.interval"].replace(" ", "")) > 0
    assert conf["execution.checkpointing.dir"].startswith("file:///opt/flink/")
    assert "--add-opens=java.base/java.util=ALL-UNNAMED" in conf["env.java.opts.all"]
    assert conf["rest.port"] == 8081 and conf["jobmanager.rpc.port"] == 6123


def test_dockerfile_builds_on_flink_2_3_with_python_3_11() -> None:
    steps = instructions()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for i, a in steps if i == "ARG" and "=" in a}
    assert re.fullmatch(r"flink:2\.3\.\d+-scala_2\.12-java17", args["FLINK_IMAGE"])
    assert ("FROM", "${FLINK_IMAGE}") in steps
    runs = " ".join(a for i, a in steps if i == "RUN")
    assert "python3.11 -m venv /opt/venv" in runs
    assert '/opt/venv/bin/pip install --no-cache-dir "/opt/odl-loop[jobs]"' in runs


def test_dockerfile_adds_the_connector_the_job_expects() -> None:
    steps = instructions()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for i, a in steps if i == "ARG" and "=" in a}
    assert args["KAFKA_CONNECTOR_VERSION"] == CONNECTOR_VERSION
    url = args["KAFKA_CONNECTOR_URL"].replace("${KAFKA_CONNECTOR_VERSION}", CONNECTOR_VERSION)
    assert url == CONNECTOR_URL
    envs = dict(shlex.split(a)[0].split("=", 1) for i, a in steps if i == "ENV" and "=" in a)
    jar = envs[CONNECTOR_ENV]
    assert jar == f"/opt/flink/connectors/{CONNECTOR_JAR}"
    runs = " ".join(a for i, a in steps if i == "RUN").replace("${KAFKA_CONNECTOR_VERSION}", CONNECTOR_VERSION)
    assert f"-o {jar}" in runs
    job = SampleJoinConfig.load(FLINK / "sample-join.yaml")
    assert job.flink.connector_jar == jar


def test_dockerfile_copies_existing_paths_to_where_the_config_points() -> None:
    steps = instructions()
    copies = [shlex.split(a) for i, a in steps if i == "COPY"]
    assert copies
    targets = {}
    for *sources, target in copies:
        if sources[0] == "--from=udf":  # the SQL function jar, built in the image's first stage
            assert sources[1:] == ["/build/.jvm/udf-build/odl-flink-udf-1.jar"]
            targets["udf"] = target
            continue
        for source in sources:
            assert not source.startswith("--")
            if any(ch in source for ch in "*?["):
                continue  # optional (glob) sources
            assert (ROOT / source).exists(), f"COPY source {source} does not exist"
            targets[source] = target
    assert targets["infra/jvm/udf"] == "/build/infra/jvm/udf"
    envs = dict(shlex.split(a)[0].split("=", 1) for i, a in steps if i == "ENV" and "=" in a)
    assert envs[UDF_ENV] == targets["udf"]
    assert targets["infra/flink/config.yaml"] == "/opt/flink/conf/config.yaml"
    assert targets["infra/flink/sample-join.yaml"] == "/opt/odl-loop/sample-join.yaml"
    for package in ("jobs", "schemas", "common", "devstack", "infra"):  # what `pip install /opt/odl-loop[jobs]` needs
        assert targets[package] == f"/opt/odl-loop/{package}"
    assert (ROOT / "jobs" / "runtime" / "flink" / "job.py").is_file()  # the -pym entry point
    assert glob.glob(str(ROOT / "setup.cfg"))


def test_submit_command_in_the_dockerfile_names_real_entry_points() -> None:
    text = (FLINK / "Dockerfile").read_text()
    # -pym needs -pyfs (Flink's CLI refuses it alone); the image has the project at /opt/odl-loop
    assert "-pyfs /opt/odl-loop -pym jobs.runtime.flink.job --config /opt/odl-loop/sample-join.yaml" in text
    from jobs.runtime.flink import job as flink_job

    assert callable(flink_job.main)


@pytest.mark.flink
def test_flink_reads_config_yaml_as_intended(tmp_path: Path) -> None:
    """Flink's own loader takes the file, and the options have the intended effect."""
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    loaded = jvm.org.apache.flink.configuration.GlobalConfiguration.loadConfiguration(str(FLINK))
    as_map = dict(loaded.toMap())
    assert as_map["python.execution-mode"] == "thread"
    assert as_map["state.backend.type"] == "rocksdb"
    env = jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment.getExecutionEnvironment(loaded)
    checkpoints = env.getCheckpointConfig()
    assert checkpoints.getCheckpointInterval() == 30_000
    assert checkpoints.getMinPauseBetweenCheckpoints() == 5_000
    assert str(checkpoints.getExternalizedCheckpointRetention()) == "RETAIN_ON_CANCELLATION"
    assert env.getConfig().getAutoWatermarkInterval() == 200
