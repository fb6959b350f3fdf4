"""Run Python code in a fresh interpreter where ``schemas._avro`` cannot be imported, as in a source
checkout without ``make setup``: what the fallbacks to fastavro do."""

from __future__ import annotations

import subprocess
import sys

_HIDE = """
import sys
class Unbuilt:
    def find_spec(self, name, path=None, target=None):
        if name == "schemas._avro":
            raise ImportError("no schemas._avro here")
sys.meta_path.insert(0, Unbuilt())
"""


def run_without_extension(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _HIDE + code], capture_output=True, text=True, timeout=120)
