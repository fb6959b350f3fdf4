"""The README's path on the compose stack (infra/docker-compose.yml), through pytest-docker's `docker_services`.

For machines with a Docker engine: the stack is built and started as `docker compose up --build` does
(Apache Kafka, Redis, the topics, the embedded join and the trainer sidecar, with the files as shipped
in the images), the generator writes a stream into it (`docker compose run generator`, the demo
profile's service, with a short run's flags), the trainer publishes a version (`trainer versions` in
its container), `trainer evaluate` scores it on the samples (read from the host through the published
ports, the model copied out of the volume), and `docker compose down` leaves nothing running.

Skipped, with the reason, where no Docker engine answers (the CI machines run none) or where the host
ports the stack publishes are held (`make up` uses the same ones).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from common.defaults import LOCAL_KAFKA_PORT, LOCAL_REDIS_PORT
from devstack.processes import port_is_open
from devstack.stack import kafka_ready, redis_ready

pytest.importorskip("pytest_docker", reason="pytest-docker is not installed (the dev extras; make setup)")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
HOST_PORTS = (LOCAL_KAFKA_PORT, LOCAL_REDIS_PORT, 9108, 9109)  # what the compose file publishes on loopback
STARTUP_S = 600.0  # the stack's start after its images are built
PUBLISH_S = 600.0  # a first published version (the trainer exports every minute)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.integration]


def engine_problem() -> str | None:
    """Why the compose stack cannot run here, or None when a Docker engine and compose answer."""
    docker = shutil.which("docker")
    if docker is None:
        return "no Docker engine: the docker command is not installed"
    try:
        info = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=20, check=False)
        if info.returncode != 0 or not info.stdout.strip():
            said = (info.stderr.strip().splitlines() or ["no output"])[-1]
            return f"no Docker engine answers (docker info: {said})"
        compose = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=20,
                                 check=False)
    except subprocess.TimeoutExpired:
        return "no Docker engine answers (docker did not reply within 20 s)"
    if compose.returncode != 0:
        return f"Docker Compose v2 is missing (docker compose version: {compose.stderr.strip()[:200]})"
    return None


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    """pytest-docker's compose file: the shipped one, once the engine and the host ports are there."""
    problem = engine_problem()
    if problem:
        pytest.skip(problem)
    busy = [port for port in HOST_PORTS if port_is_open(port)]
    if busy:
        pytest.skip(f"the compose stack publishes 127.0.0.1 ports {busy}, which something else holds (make up?)")
    return str(COMPOSE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"odl-loop-test-{os.getpid()}"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    # the embedded join's profile (one join per stack); --detach: the one-shot topics service exits, which
    # `up --wait` would count as failed
    return ["--profile embedded up --build --detach"]


def compose(project: str, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "-p", project, *args], capture_output=True,
                          text=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, f"docker compose {' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}"
    return done


def test_the_readme_path_on_the_compose_stack(docker_services, docker_compose_project_name: str,
                                              tmp_path: Path) -> None:
    project = docker_compose_project_name
    bootstrap, redis_url = f"127.0.0.1:{LOCAL_KAFKA_PORT}", f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0"
    docker_services.wait_until_responsive(lambda: kafka_ready(bootstrap) and redis_ready(redis_url),
                                          timeout=STARTUP_S, pause=2.0)
    # the README's stream: 20,000 impressions over ~5.6 h of event time, so the join's 10-minute window
    # closes as it goes, written as fast as the broker takes it
    compose(project, "run", "--rm", "generator", "--bootstrap-servers", "kafka:9092", "--impressions", "20000",
            "--rate", "1", "--speedup", "0")

    def published() -> dict | None:
        listed = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "-p", project, "exec", "-T", "trainer",
                                 "python", "-m", "trainer", "versions", "--config", "/app/infra/trainer.yaml",
                                 "--json"], capture_output=True, text=True, timeout=60, check=False)
        versions = json.loads(listed.stdout) if listed.returncode == 0 else None
        return versions if versions and versions.get("current") is not None else None

    docker_services.wait_until_responsive(lambda: published() is not None, timeout=PUBLISH_S, pause=5.0)
    versions = published()
    assert versions is not None
    current = versions["current"]
    assert any(v["version"] == current and v["status"] == "published" for v in versions["versions"]), versions

    samples, models = tmp_path / "samples.jsonl", tmp_path / "models"
    jobs_py, trainer_py = ROOT / ".venv" / "jobs" / "bin" / "python", ROOT / ".venv" / "trainer" / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    subprocess.run([str(jobs_py), "-m", "infra.cat", "samples.click", "--out", str(samples)], cwd=ROOT, env=env,
                   check=True, timeout=120)
    models.mkdir()
    compose(project, "cp", f"trainer:/models/click/{current}", str(models / str(current)))
    scored = subprocess.run([str(trainer_py), "-m", "trainer", "evaluate", "--model", str(models / str(current)),
                             "--samples", str(samples), "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300, check=True)
    scores = json.loads(scored.stdout)
    assert scores["count"] > 0 and 0.5 < scores["auc"] < 1.0, scores

    compose(project, "down", "--volumes")
    assert compose(project, "ps", "--all", "--quiet").stdout.strip() == "", "containers left after down"
    assert not [port for port in HOST_PORTS if port_is_open(port)], "a published port is still open after down"
