"""The join core depends on nothing but the standard library, orjson and what ``schemas`` needs
(docs/architecture.md): no config loader, no Kafka, Redis or Flink."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CORE_MODULES = ["jobs.core", "jobs.core.events", "jobs.core.join", "jobs.core.keyed", "jobs.core.local",
                "jobs.core.outputs", "jobs.core.spec", "jobs.core.state"]
PROBE = """
import importlib, json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    importlib.import_module(name)
tops = {m.split(".")[0] for m in set(sys.modules) - before}
print(json.dumps(sorted(t for t in tops if t not in sys.stdlib_module_names and not t.startswith("_"))))
"""


def third_party(*modules: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *modules], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return set(json.loads(out.stdout)) - {"jobs", "schemas"}


def test_the_core_imports_only_what_schemas_needs() -> None:
    allowed = third_party("schemas") | {"orjson"}
    assert third_party(*CORE_MODULES) <= allowed
    assert not {"pydantic", "yaml", "infra", "confluent_kafka", "redis", "pyflink"} & third_party(*CORE_MODULES)
