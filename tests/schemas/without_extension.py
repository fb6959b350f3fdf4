"""Run Python code in a fresh interpreter where some modules cannot be imported: ``schemas._avro``, as
in a source checkout without ``make setup`` (what the fallbacks to fastavro do), or an optional
package such as ``tensorboard`` (what the trainer does without it)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable

_HIDE = """
import sys
class Hidden:
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in {modules!r}):
            raise ImportError("no " + name + " here")
sys.meta_path.insert(0, Hidden())
"""


def run_without(modules: Iterable[str], code: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``code`` run where importing any of ``modules`` (or a submodule) raises ImportError."""
    hide = _HIDE.format(modules=tuple(modules))
    return subprocess.run([sys.executable, "-c", hide + code], capture_output=True, text=True, timeout=timeout_s)


def run_without_extension(code: str) -> subprocess.CompletedProcess[str]:
    return run_without(("schemas._avro",), code)
