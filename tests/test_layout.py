"""The floor plan, as rules on imports (docs/architecture.md, layout).

Layers, bottom up: `schemas` (the records) and `common` (the shared library) import no package of ours
above them; `devstack` (the developer stack: local broker, Redis, Flink cluster) sits on them; the
product packages `jobs` and `trainer` sit on `schemas` and `common` and never import `devstack`, each
other, or a benchmark subpackage (`*/bench/`, which may use `devstack` to start its own services); `infra`
(the developer's commands, the demo, `make bench`) is on top. No module import cycle anywhere. The checks
read the imports with `ast`, nested ones included, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUR_PACKAGES = ("schemas", "common", "devstack", "jobs", "trainer", "infra")
BENCH = ("schemas.bench", "jobs.bench", "trainer.bench")
# What each package may import of ours besides itself (benchmark subpackages: see BENCH_MAY_IMPORT).
MAY_IMPORT = {
    "schemas": (),
    "common": ("schemas",),
    "devstack": ("common", "schemas"),
    "jobs": ("common", "schemas"),
    "trainer": ("common", "schemas"),
    "infra": OUR_PACKAGES,
}
BENCH_MAY_IMPORT = ("common", "schemas", "devstack")
# The schema tool's command line keeps the shared command-line conventions; nothing imports it.
COMMAND_MAY_IMPORT = {"schemas.__main__": ("common",)}

# The join core is pure: the standard library, the record definitions and itself (docs/architecture.md).
CORE_MAY_IMPORT = ("schemas", "jobs.core", "jobs.errors")


def imported_names(path: Path, root: Path = ROOT) -> set[str]:
    """What each import of `path` names, at any depth: `import a.b` names a.b, `from a import b` a.b."""
    package = path.relative_to(root).parent.parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *([node.module] if node.module else [])))
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module (and imported name) that `path` imports, at any depth; relative imports resolved."""
    return imported_names(path, root) | {name.rpartition(".")[0] for name in imported_names(path, root)
                                         if "." in name}


def _in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def our_modules(packages: tuple[str, ...] = OUR_PACKAGES) -> dict[str, Path]:
    """Every module of ours by name; a compiled extension by its type stub (`schemas/_avro.pyi`)."""
    return {module_name(p): p for package in packages for suffix in ("*.pyi", "*.py")
            for p in sorted((ROOT / package).rglob(suffix))}


def _allowed(importer: str, imported: str) -> bool:
    own = importer.split(".")[0]
    if _in_package(imported, own):
        bench_of_own = [b for b in BENCH if _in_package(imported, b)]
        return not bench_of_own or any(_in_package(importer, b) for b in bench_of_own)
    if any(_in_package(importer, b) for b in BENCH):
        return any(_in_package(imported, p) for p in BENCH_MAY_IMPORT)
    return any(_in_package(imported, p) for p in (*MAY_IMPORT[own], *COMMAND_MAY_IMPORT.get(importer, ())))


def layer_violations() -> list[str]:
    found = []
    for name, path in our_modules().items():
        for module in sorted(imported_modules(path)):
            if module.split(".")[0] in OUR_PACKAGES and not _allowed(name, module):
                found.append(f"{path.relative_to(ROOT).as_posix()}: imports {module}")
    return found


def import_cycles(modules: dict[str, Path], root: Path = ROOT) -> list[list[str]]:
    """Strongly connected components (Tarjan) of more than one module in the import graph of ``modules``.

    An import names a module or a name in one; it is an edge to the deepest module of ours it names."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(path, root):
            parts = imported.split(".")
            for n in range(len(parts), 0, -1):
                candidate = ".".join(parts[:n])
                if candidate in modules:
                    if candidate != name:
                        targets.add(candidate)
                    break
        graph[name] = targets
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_walk_sees_every_package() -> None:
    names = set(our_modules())
    assert {"jobs.sample_join", "trainer.__main__", "schemas", "common.config", "devstack.stack", "infra.local",
            "jobs.bench.soak", "jobs.runtime.embedded.runtime"} <= names
    assert {"common.config", "common.config.StrictConfig"} <= imported_modules(ROOT / "jobs" / "config.py")
    assert {"schemas.errors", "schemas.codec.Codec"} <= imported_modules(ROOT / "schemas" / "__init__.py")


def test_the_rules_see_what_they_forbid() -> None:
    """The rule itself, on imports that break it (a test that can fail)."""
    assert not _allowed("jobs.runtime.embedded.runtime", "devstack.stack")
    assert not _allowed("trainer.state", "trainer.bench.world")
    assert not _allowed("jobs.config", "trainer.config")
    assert not _allowed("common.services", "jobs.config")
    assert not _allowed("schemas.codec", "common.errors")
    assert not _allowed("devstack.flink", "jobs.runtime.flink.job")
    assert not _allowed("jobs.bench.soak", "trainer.state")
    assert _allowed("jobs.bench.soak", "devstack.stack") and _allowed("jobs.bench.soak", "jobs.core")
    assert _allowed("infra.local", "jobs.config") and _allowed("trainer.sidecar.loop", "trainer.config")


def test_every_import_keeps_to_its_layer() -> None:
    offenders = layer_violations()
    assert not offenders, "imports across the layers (see this module's docstring):\n" + "\n".join(offenders)


def test_no_import_cycles() -> None:
    cycles = import_cycles(our_modules())
    assert not cycles, "modules that import each other (directly or round a circle):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_circle(tmp_path: Path) -> None:
    for name, body in {"a.py": "import b\n", "b.py": "from c import x\n", "c.py": "def f():\n    import a\n",
                       "d.py": "import a\n"}.items():
        (tmp_path / name).write_text(body)
    assert import_cycles({p.stem: p for p in tmp_path.glob("*.py")}, tmp_path) == [["a", "b", "c"]]


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
