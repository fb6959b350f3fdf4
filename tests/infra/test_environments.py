"""`make setup` built both virtualenvs, each importing its stack (docs/architecture.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STACKS = {
    "jobs": ["pyflink", "confluent_kafka", "fastavro", "avro", "pydantic", "redis", "orjson", "schemas", "common",
             "jobs", "jobs.runtime.flink.env", "jobs.runtime.embedded.runtime"],
    "trainer": ["tensorflow", "confluent_kafka", "fastavro", "avro", "pydantic", "redis", "orjson", "schemas", "common",
                "trainer", "trainer.fit"],
}


@pytest.mark.parametrize("venv", sorted(STACKS))
def test_venv_imports_its_stack(venv: str) -> None:
    python = ROOT / ".venv" / venv / "bin" / "python"
    assert python.exists(), f"{python} is missing: run 'make setup'"
    modules = STACKS[venv]
    result = subprocess.run([str(python), "-c", f"import {', '.join(modules)}; import google.protobuf as p; "
                             "print(p.__version__)"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    protobuf_major = int(result.stdout.strip().split(".")[0])
    # The reason for two venvs: PyFlink pins protobuf < 6, TensorFlow needs >= 6.31.
    assert protobuf_major < 6 if venv == "jobs" else protobuf_major >= 6


def test_pyflink_and_tensorflow_stay_apart() -> None:
    for venv, absent in (("jobs", "tensorflow"), ("trainer", "pyflink")):
        python = ROOT / ".venv" / venv / "bin" / "python"
        result = subprocess.run([str(python), "-c", f"import importlib.util, sys; "
                                 f"sys.exit(importlib.util.find_spec({absent!r}) is not None)"],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f"{absent} is installed in .venv/{venv}"
