"""Processes of the developer stack: free ports, spawning a service in its own session, waiting for it,
stopping it by pid (so a service outlives the command that started it)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.output import write_atomic
from devstack.errors import DevStackError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise DevStackError(f"{what} did not become ready within {timeout_s:.0f} s")


@dataclass
class ManagedProcess:
    """A service process we started in its own session (so it outlives `up`), stopped by pid."""

    name: str
    pid: int
    address: str
    log: str

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie child of ours counts as gone.
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(self.pid, os.WNOHANG)[0] == self.pid:
                return False
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            if not self.alive():
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            deadline = time.monotonic() + wait_s
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.alive():
            raise DevStackError(f"{self.name} (pid {self.pid}) did not stop")


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    return proc.pid


def write_state(path: Path, state: Any) -> None:
    """Record what a command started (a dataclass) in its state file, atomically."""
    write_atomic(path, json.dumps(asdict(state), indent=2))


def read_state(path: Path, start_command: str) -> dict[str, Any] | None:
    """A state file's fields; None when there is none (nothing was started)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DevStackError(
            f"state file {path} is unreadable ({exc}); remove it and run '{start_command}' again"
        ) from exc
    return data
