"""Package boundaries: the product never reaches into the developer stack, the shared library into nothing.

`infra` is the developer stack (local services, `cat`, Docker, `make bench`); `common` is the shared
library every deployable imports (docs/architecture.md, layout). The checks read the imports with
`ast`, nested ones included, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_PACKAGES = ("schemas", "jobs", "trainer", "common")

# Developer tools inside the product packages that genuinely start local services (a broker and a
# redis-server on free ports) for their own run; they may import `infra.local` and nothing else of infra.
STARTS_THE_DEVELOPER_STACK = {
    "jobs/soak.py": "the soak test runs on its own broker and Redis",
    "jobs/bench/stack.py": "the Kafka benchmarks run on their own broker and Redis",
    "trainer/bench/sidecar.py": "the benchmark runs on its own broker and Redis",
    "trainer/bench/gate.py": "the gate benchmark's Kafka run uses its own broker and Redis",
}
STACK_MODULE = "infra.local"

# The join core is pure: the standard library, the record definitions and itself (docs/architecture.md).
CORE_MAY_IMPORT = ("schemas", "jobs.core", "jobs.errors")


def imported_modules(path: Path) -> set[str]:
    """Every module (and imported name) that `path` imports, at any depth; relative imports resolved."""
    package = path.relative_to(ROOT).parent.parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *([node.module] if node.module else [])))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def product_modules(packages: tuple[str, ...] = PRODUCT_PACKAGES) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def test_the_walk_sees_the_product() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in product_modules()}
    assert {"jobs/sample_join.py", "trainer/__main__.py", "schemas/__init__.py", "common/config.py"} <= names
    assert set(STARTS_THE_DEVELOPER_STACK) <= names, "an allow-listed module is gone: drop it from the list"
    assert {"common.config", "common.config.StrictConfig"} <= imported_modules(ROOT / "jobs" / "config.py")
    assert {"schemas.errors", "schemas.codec.Codec"} <= imported_modules(ROOT / "schemas" / "__init__.py")


def test_product_modules_do_not_import_the_developer_stack() -> None:
    offenders = []
    for path in product_modules():
        name = path.relative_to(ROOT).as_posix()
        infra = {m for m in imported_modules(path) if _in_package(m, "infra")}
        allowed = {STACK_MODULE} | {m for m in infra if _in_package(m, STACK_MODULE)}
        if name in STARTS_THE_DEVELOPER_STACK:
            infra -= allowed
        if infra:
            offenders.append(f"{name}: {sorted(infra)}")
    assert not offenders, "product code imports infra (use common):\n" + "\n".join(offenders)


def test_the_shared_library_imports_no_deployable() -> None:
    offenders = [
        f"{path.relative_to(ROOT).as_posix()}: {module}"
        for path in product_modules(("common",))
        for module in imported_modules(path)
        if any(_in_package(module, package) for package in ("jobs", "trainer", "infra"))
    ]
    assert not offenders, "common must not depend on a deployable:\n" + "\n".join(offenders)


def _core_modules() -> list[Path]:
    return sorted((ROOT / "jobs" / "core").rglob("*.py"))


def test_the_join_core_imports_only_the_standard_library_and_schemas() -> None:
    assert {"jobs/core/join.py", "jobs/core/state.py"} <= {p.relative_to(ROOT).as_posix() for p in _core_modules()}
    offenders = [
        f"{path.relative_to(ROOT).as_posix()}: {module}"
        for path in _core_modules()
        for module in sorted(imported_modules(path))
        if module.split(".")[0] not in sys.stdlib_module_names
        and not any(_in_package(module, allowed) for allowed in CORE_MAY_IMPORT)
    ]
    assert not offenders, "the join core may import the stdlib, schemas and itself only:\n" + "\n".join(offenders)


def test_loading_the_join_core_loads_no_package_beyond_what_schemas_loads() -> None:
    """The same at run time, through every import the core's modules make (package __init__s included):
    with the schemas modules loaded first, the core's modules add the stdlib and `jobs` only."""
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in _core_modules()]
    code = (
        "import importlib, pkgutil, sys\n"
        "import schemas\n"
        "for info in pkgutil.iter_modules(schemas.__path__):\n"
        "    if not info.ispkg and info.name != '__main__':\n"
        "        importlib.import_module('schemas.' + info.name)\n"
        "before = set(sys.modules)\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))\n"
    )
    added = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "jobs" in added
    extra = [m for m in added if m != "jobs" and m not in sys.stdlib_module_names]
    assert not extra, f"importing jobs.core loads {extra}"
