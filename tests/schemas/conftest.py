"""Fixtures of the schemas tests: temporary copies of schemas/ and the real CLI run on them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas.registry import PACKAGE_DIR


def _copy_schema_dir(dest: Path) -> Path:
    """Copy the data files of the shipped schema directory (.avsc, compat.yaml, versions/) to `dest`."""
    dest.mkdir(parents=True)
    for path in PACKAGE_DIR.glob("*.avsc"):
        shutil.copy2(path, dest / path.name)
    if (PACKAGE_DIR / "compat.yaml").exists():
        shutil.copy2(PACKAGE_DIR / "compat.yaml", dest / "compat.yaml")
    shutil.copytree(PACKAGE_DIR / "versions", dest / "versions",
                    ignore=shutil.ignore_patterns("__pycache__", "*.py", "*.pyc"))
    return dest


@pytest.fixture
def schemas_copy(tmp_path: Path) -> Path:
    """A fresh copy of the shipped schema directory, to edit freely."""
    return _copy_schema_dir(tmp_path / "schemas")


@pytest.fixture
def copy_schemas(tmp_path: Path) -> Callable[[str], Path]:
    """Make further named copies: copy_schemas("old") -> tmp_path/old."""
    return lambda name: _copy_schema_dir(tmp_path / name)


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m schemas ARGS` as a subprocess (the real entry point) from an unrelated directory."""

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "schemas", *map(str, args)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.fixture
def edit_schema() -> Callable[[Path, str, Callable[[dict[str, Any]], None]], dict[str, Any]]:
    """edit_schema(dir, "impression", fn): load dir/impression.avsc, let fn mutate it, write it back."""

    def edit(root: Path, stem: str, fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        path = root / f"{stem}.avsc"
        schema = json.loads(path.read_text())
        fn(schema)
        path.write_text(json.dumps(schema, indent=2) + "\n")
        return schema

    return edit
