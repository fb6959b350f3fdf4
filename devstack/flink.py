"""The local Flink session cluster: a standalone JobManager and TaskManager on loopback.

Started from the PyFlink package itself (``FLINK_HOME`` = the installed ``pyflink`` folder, its
``bin/jobmanager.sh`` / ``bin/taskmanager.sh start-foreground``), with ``FLINK_CONF_DIR`` =
``<state>/flink/conf``: ``infra/flink/local/config.yaml`` with this machine's ports, Python and
paths filled in. Checkpoints and savepoints go to ``<state>/flink/checkpoints`` and ``savepoints``.
Jobs are submitted with ``bin/flink run``, as on any cluster (:func:`submit`).

``python -m infra.local flink-up | flink-down | flink-submit`` (``make flink-up`` ...) drive it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack.errors import DevStackError
from devstack.processes import ManagedProcess, free_port, port_is_open, read_state, spawn, wait_until, write_state

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_TEMPLATE = PROJECT_ROOT / "infra" / "flink" / "local" / "config.yaml"
DEFAULT_REST_PORT = 8081
STATE_FILE_NAME = "flink-cluster.json"
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


def flink_home() -> Path:
    """The PyFlink package folder: a complete Flink distribution (bin/, lib/, conf/)."""
    try:
        import pyflink
    except ImportError:
        raise DevStackError("the Flink cluster needs PyFlink: run it with .venv/jobs/bin/python (make setup)") from None
    return Path(pyflink.__file__).resolve().parent


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _python_path() -> str:
    """The project and this venv's packages: pemja's interpreter does not see the venv (FLINK-38585)."""
    import sysconfig

    paths = [str(PROJECT_ROOT), *dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))]
    return os.pathsep.join(paths)


@dataclass
class ClusterState:
    rest_url: str
    conf_dir: str
    processes: list[ManagedProcess] = field(default_factory=list)

    def save(self, path: Path) -> None:
        write_state(path, self)

    @classmethod
    def load(cls, path: Path) -> ClusterState | None:
        data = read_state(path, "flink-up")
        if data is None:
            return None
        return cls(data["rest_url"], data["conf_dir"], [ManagedProcess(**p) for p in data["processes"]])


class FlinkCluster:
    """Starts, reports on and stops the session cluster recorded in ``<state_dir>/flink-cluster.json``."""

    def __init__(self, state_dir: Path, rest_port: int = DEFAULT_REST_PORT) -> None:
        self.dir = (state_dir / "flink").resolve()
        self.state_file = state_dir / STATE_FILE_NAME
        self.rest_port = rest_port
        self.conf_dir = self.dir / "conf"
        self.home = flink_home()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def write_config(self) -> None:
        config = yaml.safe_load(CONFIG_TEMPLATE.read_text())
        for key, value in {
            "jobmanager.rpc.port": free_port(),
            "rest.port": self.rest_port,
            "python.executable": sys.executable,
            "python.client.executable": sys.executable,
            "python.pythonpath": _python_path(),
            "execution.checkpointing.dir": (self.dir / "checkpoints").as_uri(),
            "execution.checkpointing.savepoint-dir": (self.dir / "savepoints").as_uri(),
            "io.tmp.dirs": str(self.dir / "tmp"),
        }.items():
            _set(config, key, value)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        (self.conf_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        for name in ("log4j-console.properties", "log4j-cli.properties"):
            shutil.copy(self.home / "conf" / name, self.conf_dir / name)
        # lib/ = PyFlink's lib/ plus flink-python (from opt/), as a Flink distribution set up for
        # Python jobs: pemja (its native Python library can be loaded once per JVM) then comes from
        # the TaskManager's own class path, so a second job or a resubmission runs in the same JVM.
        lib = self.dir / "lib"
        shutil.rmtree(lib, ignore_errors=True)
        lib.mkdir()
        for jar in [*(self.home / "lib").glob("*.jar"), *(self.home / "opt").glob("flink-python-*.jar")]:
            (lib / jar.name).symlink_to(jar)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "FLINK_HOME": str(self.home), "FLINK_CONF_DIR": str(self.conf_dir),
                "FLINK_LOG_DIR": str(self.dir / "log"), "FLINK_PID_DIR": str(self.dir),
                "FLINK_LIB_DIR": str(self.dir / "lib")}

    def _start(self, name: str, script: str) -> ManagedProcess:
        log = self.dir / "log" / f"{name}.out"
        pid = spawn(name, ["bash", str(self.home / "bin" / script), "start-foreground"], log, self._env())
        return ManagedProcess(name, pid, self.rest_url, str(log))

    def overview(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.rest_url}/overview", timeout=2) as response:
            return dict(json.load(response))

    def _taskmanagers(self) -> int:
        try:
            return int(self.overview()["taskmanagers"])
        except (OSError, ValueError, KeyError):
            return -1

    def up(self, log: Callable[[str], None] = print, timeout_s: float = 120.0) -> ClusterState:
        current = ClusterState.load(self.state_file)
        if current and all(p.alive() for p in current.processes):
            log(f"Flink cluster is already up: {current.rest_url}")
            return current
        if current:
            self._stop(current)
        if port_is_open(self.rest_port):
            raise DevStackError(f"cannot start the Flink cluster: port {self.rest_port} on 127.0.0.1 is already in use")
        self.write_config()
        started: list[ManagedProcess] = []
        try:
            started.append(self._start("jobmanager", "jobmanager.sh"))
            wait_until(lambda: self._taskmanagers() >= 0, timeout_s, f"the JobManager ({self.rest_url})")
            started.append(self.start_taskmanager(timeout_s, expected=1))
        except BaseException:
            for proc in reversed(started):
                proc.stop()
            raise
        state = ClusterState(self.rest_url, str(self.conf_dir), started)
        state.save(self.state_file)
        log(f"Flink cluster up: web UI and REST on {self.rest_url}, FLINK_CONF_DIR={self.conf_dir}")
        return state

    def start_taskmanager(self, timeout_s: float = 120.0, expected: int = 1) -> ManagedProcess:
        """Start one more TaskManager and wait until the JobManager counts ``expected`` of them."""
        proc = self._start("taskmanager", "taskmanager.sh")
        wait_until(lambda: self._taskmanagers() >= expected, timeout_s, "the TaskManager")
        return proc

    def down(self, log: Callable[[str], None] = print) -> None:
        state = ClusterState.load(self.state_file)
        if state is None:
            log("Flink cluster is not running")
            return
        self._stop(state)
        log("Flink cluster stopped")

    def _stop(self, state: ClusterState) -> None:
        for proc in reversed(state.processes):
            proc.stop(timeout_s=20)
        self.state_file.unlink(missing_ok=True)

    def submit(self, job_config: Path, *job_args: str, from_checkpoint: str | None = None) -> str:
        """``flink run -d`` the sample join (``jobs.runtime.flink.job``) on this cluster; returns the JobID.

        The job ships the Kafka connector and its SQL function jar itself (``pipeline.jars``); no
        ``-j``: for a Python job that would replace the flink-python jar the CLI submits as job jar.
        """
        argv = [str(self.home / "bin" / "flink"), "run", "-d", "-m", f"127.0.0.1:{self.rest_port}",
                "-pyexec", sys.executable, "-pyclientexec", sys.executable]
        if from_checkpoint:
            argv += ["-s", from_checkpoint]
        argv += ["-pym", "jobs.runtime.flink.job", "--config", str(job_config.resolve()), *job_args]
        env = {**self._env(), "PYTHONPATH": str(PROJECT_ROOT)}
        result = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
                                check=False)
        found = _JOB_ID.search(result.stdout)
        if result.returncode != 0 or not found:
            output = (result.stdout + result.stderr).strip() or "no output"
            causes = re.findall(r"(?:Caused by: |error: )(.+)", output)
            reason = causes[-1] if causes else output.splitlines()[-1]
            raise DevStackError(f"flink run failed (exit {result.returncode}): {reason.strip()[:500]}")
        return found.group(1)
