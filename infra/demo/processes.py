"""The demo's child processes: each in its own session, logs to a file, all stopped on the way out."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def wait_or_kill(self, timeout_s: float) -> int | None:
        """After a signal already sent: wait for the exit, SIGKILL the group after ``timeout_s``."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout_s)
        if self.running():
            self.signal(signal.SIGKILL)
            self.proc.wait(5.0)
        return self.proc.poll()

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM the child's whole process group, then SIGKILL what is left after ``timeout_s``."""
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            if not self.running():
                break
            self.signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait_s)
        return self.proc.poll()


@dataclass
class Children:
    """Starts named children; ``stop_all`` (also on error paths) leaves nothing running."""

    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    started: dict[str, Child] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], stdout: Path | None = None) -> Child:
        """Output to ``<log_dir>/<name>.log``; with ``stdout`` (a command that prints its result) stderr only."""
        log = self.log_dir / f"{name}.log"
        with contextlib.ExitStack() as files:
            err = files.enter_context(log.open("ab"))
            out = err if stdout is None else files.enter_context(stdout.open("wb"))
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=err if stdout is not None else subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        child = Child(name, proc, log)
        self.started[name] = child
        return child

    def wait(self, name: str, timeout_s: float) -> int | None:
        """Wait for a child to end by itself; None if it is still running at the deadline."""
        deadline = time.monotonic() + timeout_s
        child = self.started[name]
        while child.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        return child.proc.poll()

    def stop_all(self) -> None:
        for child in reversed(self.started.values()):
            child.stop()


def listen_port(first: int = 20_000, last: int = 30_000) -> int:
    """A free loopback port below Linux's ephemeral range (32768+), so that no outgoing connection
    opened between choosing it and a child binding it can take it."""
    for port in range(first, last):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {first}..{last}")
