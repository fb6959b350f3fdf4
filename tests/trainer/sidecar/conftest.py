"""Fixtures of the sidecar tests (helpers in sidecar_helpers.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sidecar_helpers import SidecarEnv, make_env


@pytest.fixture
def sidecar_env(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Callable[..., SidecarEnv]:
    """Factory: ``sidecar_env(partitions=1, **{"sidecar.export_interval": "2s"})``."""

    def make(partitions: int = 1, **overrides: Any) -> SidecarEnv:
        return make_env(kafka_bootstrap, redis_url, tmp_path, partitions, **overrides)

    return make


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Sidecar processes a test started; any still running at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
