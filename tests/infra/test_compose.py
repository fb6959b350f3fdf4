"""Static checks of docker-compose and the Dockerfiles (no Docker engine runs on these machines).

They parse, every image they build has its Dockerfile and copied paths, every `python -m` entrypoint
exists, and the addresses and ports agree with the code's defaults.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.config import SampleJoinConfig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _dockerfiles(compose: dict[str, Any]) -> set[Path]:
    return {
        (COMPOSE.parent / s["build"]["context"] / s["build"]["dockerfile"]).resolve()
        for s in compose["services"].values() if "build" in s
    }


def test_every_built_image_has_its_dockerfile_and_sources(compose: dict[str, Any]) -> None:
    dockerfiles = _dockerfiles(compose)
    assert dockerfiles, "compose builds no image"
    for dockerfile in dockerfiles | {ROOT / "infra" / "trainer" / "Dockerfile"}:
        text = dockerfile.read_text()
        assert text.startswith("#") and "\nFROM " in text, dockerfile
        for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
            *sources, _dest = line.split()
            if sources[0].startswith("--from="):
                continue  # from an earlier build stage, not the build context
            for source in sources:
                if not source.startswith("--"):
                    assert any(ROOT.glob(source)), f"{dockerfile} copies missing {source}"


def _module_commands(compose: dict[str, Any]) -> list[str]:
    modules = []
    for dockerfile in _dockerfiles(compose) | {ROOT / "infra" / "trainer" / "Dockerfile"}:
        modules += re.findall(r'ENTRYPOINT \["python", "-m", "([\w.]+)"', dockerfile.read_text())
    for service in compose["services"].values():
        entrypoint = service.get("entrypoint") or []
        if entrypoint[:2] == ["python", "-m"]:
            modules.append(entrypoint[2])
    return modules


def test_every_python_entrypoint_exists(compose: dict[str, Any]) -> None:
    modules = _module_commands(compose)
    assert {"jobs.sample_join", "jobs.generate", "infra.local", "trainer"} <= set(modules)
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module


def test_services_agree_with_the_code_defaults(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    join = services["sample-join"]
    for name, value in join["environment"].items():
        monkeypatch.setenv(name, value)
    config_path = join["command"][join["command"].index("--config") + 1]
    config = SampleJoinConfig.load(ROOT / config_path.removeprefix("/app/"))
    assert config.kafka.bootstrap_servers == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert config.redis.url == "redis://redis:6379/0"
    assert f"127.0.0.1:{config.metrics.port}:{config.metrics.port}" in join["ports"]
    assert config.metrics.host == "0.0.0.0"  # inside the container, behind the loopback-published port
    assert join["command"][:3] == ["run", "--engine", "local"]
    assert services["topics"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert services["generator"]["command"][services["generator"]["command"].index("--bootstrap-servers") + 1] == (
        "kafka:9092")


def test_flink_submission_names_the_job_module_the_jar_and_the_config(compose: dict[str, Any]) -> None:
    argv = compose["services"]["flink-submit"]["entrypoint"]
    module = argv[argv.index("-pym") + 1]
    assert importlib.util.find_spec(module) is not None
    jar = argv[argv.index("-j") + 1]
    dockerfile = (ROOT / "infra" / "flink" / "Dockerfile").read_text()
    assert f"ENV FLINK_KAFKA_CONNECTOR_JAR={jar}" in dockerfile
    config = argv[argv.index("--config") + 1]
    assert f"COPY infra/flink/{Path(config).name} {config}" in dockerfile
    assert compose["services"]["flink-submit"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_example_config_loads_with_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "METRICS_PORT", "FLINK_KAFKA_CONNECTOR_JAR"):
        monkeypatch.delenv(name, raising=False)
    config = SampleJoinConfig.load(ROOT / "infra" / "sample_join.yaml")
    assert config.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert config.redis.url == "redis://127.0.0.1:16379/0"
    assert config.flink.connector_jar is None
    assert [t.name for t in config.join.tasks] == ["click"]


def test_published_ports_bind_the_hosts_loopback_only(compose: dict[str, Any]) -> None:
    published = [(name, port) for name, s in compose["services"].items() for port in s.get("ports", [])]
    assert published
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_images_run_as_a_non_root_user(compose: dict[str, Any]) -> None:
    for dockerfile in _dockerfiles(compose) | {ROOT / "infra" / "jobs" / "Dockerfile"}:
        users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.M)
        assert users, f"{dockerfile} never switches away from root"
        assert users[-1] not in ("root", "0", "0:0"), f"{dockerfile} runs as {users[-1]}"


def test_local_defaults_are_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "METRICS_HOST"):
        monkeypatch.delenv(name, raising=False)
    config = SampleJoinConfig.load(ROOT / "infra" / "sample_join.yaml")
    assert config.metrics.host == "127.0.0.1"
    assert config.kafka.bootstrap_servers.startswith("127.0.0.1:")
    assert config.redis.url.startswith("redis://127.0.0.1:")


def test_trainer_service_runs_the_sidecar_with_the_example_config(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer.config import TrainerConfig

    trainer = compose["services"]["trainer"]
    for name, value in trainer["environment"].items():
        monkeypatch.setenv(name, value)
    assert trainer["command"][0] == "run"
    config_path = trainer["command"][trainer["command"].index("--config") + 1]
    config = TrainerConfig.load(ROOT / config_path.removeprefix("/app/")).sidecar
    assert config.kafka.bootstrap_servers == "kafka:9092" and config.redis.url == "redis://redis:6379/0"
    assert f"127.0.0.1:{config.metrics_port}:{config.metrics_port}" in trainer["ports"]
    volume = trainer["volumes"][0].split(":")
    assert volume[0] in compose["volumes"] and config.model_dir.is_relative_to(volume[1])
    dockerfile = (ROOT / "infra" / "trainer" / "Dockerfile").read_text()
    assert re.search(r"^USER app$", dockerfile, flags=re.M)
    assert 'ENTRYPOINT ["python", "-m", "trainer"]' in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/metrics" in dockerfile
    assert f"METRICS_PORT={config.metrics_port}" in dockerfile
    assert config.topic in yaml.safe_load((ROOT / "infra" / "topics.yaml").read_text())["topics"]


# -- each service's environment against the variables its config file reads --------------------------

# Variables a service sets for a program other than a config file, and which program reads them.
READ_BY_PROGRAM = {
    ("topics", "KAFKA_BOOTSTRAP_SERVERS"): "python -m infra.local topics reads it itself (it takes no --config)",
    ("flink-jobmanager", "FLINK_PROPERTIES"): "the Flink image's entrypoint appends it to its config.yaml",
    ("flink-taskmanager", "FLINK_PROPERTIES"): "the Flink image's entrypoint appends it to its config.yaml",
}


class _RecordingEnviron(dict[str, str]):
    """An environment that records which variables `${VAR}` expansion looks up."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return super().__contains__(name)


def _dockerfile_of(compose: dict[str, Any], service: dict[str, Any]) -> Path:
    """The Dockerfile that builds the service's image (its own build, or the service building that image)."""
    builder = service if "build" in service else next(
        s for s in compose["services"].values() if "build" in s and s.get("image") == service["image"])
    return COMPOSE.parent / builder["build"]["context"] / builder["build"]["dockerfile"]


def _image_env(dockerfile: Path) -> dict[str, str]:
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    return dict(pair.split("=", 1) for line in re.findall(r"^ENV (.+)$", text, flags=re.M) for pair in line.split())


def _repo_file(dockerfile: Path, container_path: str) -> Path:
    """The file of this checkout that the image holds at ``container_path`` (its COPY and WORKDIR lines)."""
    workdir = "/"
    for keyword, args in re.findall(r"^(WORKDIR|COPY) (.+)$", dockerfile.read_text(), flags=re.M):
        if keyword == "WORKDIR":
            workdir = str(Path(workdir) / args.strip())
            continue
        *sources, dest = (a for a in args.split() if not a.startswith("--"))
        if args.startswith("--from=") or len(sources) != 1:
            continue
        target = str(Path(workdir) / dest)  # an absolute dest replaces the working folder
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            found = ROOT / sources[0] / container_path[len(target):].lstrip("/")
            if found.is_file():
                return found
    raise AssertionError(f"{dockerfile} copies no file of this checkout to {container_path}")


def _argv(service: dict[str, Any]) -> list[str]:
    return [*(service.get("entrypoint") or []), *(service.get("command") or [])]


def test_every_service_sets_what_its_config_reads_and_nothing_else(compose: dict[str, Any]) -> None:
    """Every `${VAR}` of a config file a service of this project runs with is set there (or in its image)
    or has a default, and every variable the service sets is read by that file (or by the program named
    in READ_BY_PROGRAM)."""
    from common.config import expand_env
    from common.errors import ConfigError

    checked = []
    built = {s.get("image") for s in compose["services"].values() if "build" in s}
    for name, service in compose["services"].items():
        if "build" not in service and service.get("image") not in built:
            continue  # a third-party image (apache/kafka, redis): its variables are its own
        environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        argv = _argv(service)
        read: set[str] = {var for (svc, var) in READ_BY_PROGRAM if svc == name}
        if "--config" in argv:
            dockerfile = _dockerfile_of(compose, service)
            config = _repo_file(dockerfile, argv[argv.index("--config") + 1])
            recording = _RecordingEnviron({**_image_env(dockerfile), **environment})
            try:
                expand_env(config.read_text(), recording)
            except ConfigError as exc:  # a variable neither set nor defaulted
                raise AssertionError(f"service {name} runs {config.relative_to(ROOT)}: {exc}") from None
            read |= recording.read
            checked.append(name)
        unread = sorted(set(environment) - read)
        assert not unread, f"service {name} sets {unread}, which nothing it runs reads"
    assert {"sample-join", "trainer", "flink-submit"} <= set(checked), checked


def _writes_samples(service: dict[str, Any]) -> bool:
    """Whether a service runs a sample join (embedded, or submits the Flink job): it writes samples.<task>."""
    words = [str(w) for w in [*(service.get("entrypoint") or []), *(service.get("command") or [])]]
    return "jobs.runtime.flink.job" in words or (words[:1] == ["run"] and "--engine" in words)


def test_no_profile_combination_runs_two_joins_on_one_output_topic(compose: dict[str, Any]) -> None:
    """Two joins writing samples.click would emit every sample twice with two watermarks; each join
    service has a profile of its own, and no other profile (or none) starts a second one."""
    joins = {name: s.get("profiles", []) for name, s in compose["services"].items() if _writes_samples(s)}
    assert {"sample-join", "flink-submit"} <= joins.keys(), joins
    assert all(len(profiles) == 1 for profiles in joins.values()), joins  # never started without a profile
    assert len({p for profiles in joins.values() for p in profiles}) == len(joins), joins
    header = (ROOT / "infra" / "docker-compose.yml").read_text()
    assert "--profile embedded up" in header and "--profile flink up" in header
