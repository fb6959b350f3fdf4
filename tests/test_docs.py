"""The design lives in the repository: references resolve inside it, and the README agrees with the code."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "__pycache__", ".bench", ".state", ".demo", ".pytest_cache", ".mypy_cache",
             ".ruff_cache", ".hypothesis", "node_modules"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".cfg", ".toml", ".txt", ".avsc", ".json", ".ini"}
TEXT_NAMES = {"Makefile", "Dockerfile"}
# Built from pieces so that this file does not match itself.
OUTSIDE = re.compile("DESIGN" + r"(\.md|\s*\u00a7|\s+section)" + "|" + re.escape("../" + "shared"))
DOC_PATH = re.compile(r"\bdocs/[\w.-]+\.md\b")
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def project_files() -> list[Path]:
    out = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in names:
            path = Path(folder) / name
            if path.suffix in TEXT_SUFFIXES or name in TEXT_NAMES or name.startswith("Dockerfile"):
                out.append(path)
    return out


def test_the_scan_sees_the_project() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in project_files()}
    assert {"README.md", "Makefile", "jobs/core/join.py", "docs/join.md"} <= names


def test_no_file_points_outside_the_repository() -> None:
    offenders = []
    for path in project_files():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "cite docs/*.md instead:\n" + "\n".join(offenders)


def test_cited_design_documents_exist() -> None:
    missing = []
    for path in project_files():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for cited in DOC_PATH.findall(line):
                if not (ROOT / cited).is_file():
                    missing.append(f"{path.relative_to(ROOT)}:{n}: {cited}")
    assert not missing, "\n".join(missing)


def test_relative_links_of_the_documents_resolve() -> None:
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in MD_LINK.findall(path.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)


def test_design_documents_are_all_there() -> None:
    expected = {"architecture", "wire-format", "join", "guarantees", "trainer", "cli", "performance"}
    assert expected <= {p.stem for p in (ROOT / "docs").glob("*.md")}


def _readme_yaml_after(heading: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```yaml\n", text.index(heading)) + len("```yaml\n")
    return text[start : text.index("```", start)]


def test_readme_configuration_example_is_the_shipped_config() -> None:
    example = yaml.safe_load(_readme_yaml_after("## Configuration"))
    shipped = yaml.safe_load((ROOT / "infra" / "sample_join.yaml").read_text(encoding="utf-8"))
    assert example == shipped


def test_makefile_and_test_script_name_existing_test_paths() -> None:
    for name in ("Makefile", "infra/run_tests.sh"):
        text = (ROOT / name).read_text(encoding="utf-8")
        paths = set(re.findall(r"(?<![\w/])tests/[\w./-]*", text))
        assert paths, name
        missing = sorted(p for p in paths if not (ROOT / p).exists())
        assert not missing, f"{name} names {missing}"


PROJECT_PACKAGES = ("schemas", "jobs", "trainer", "infra", "common")
MODULE_COMMAND = re.compile(r"python -m ((?:" + "|".join(PROJECT_PACKAGES) + r")(?:\.\w+)*)")


def _runnable(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


def test_documented_commands_name_runnable_modules() -> None:
    texts = [ROOT / "README.md", ROOT / "Makefile", *(ROOT / "docs").glob("*.md"), *ROOT.glob("*/*.md")]
    named = {(path.relative_to(ROOT).as_posix(), m) for path in texts for m in MODULE_COMMAND.findall(path.read_text())}
    assert ("docs/cli.md", "jobs.sample_join") in named
    missing = sorted(f"{doc}: python -m {module}" for doc, module in named if not _runnable(module))
    assert not missing, "documented commands that do not exist:\n" + "\n".join(missing)


FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
ANCHOR_LINK = re.compile(r"\]\(([^)\s#]*)#([^)\s]+)\)")


def _headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of the Markdown headings outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            out.append((len(m.group(1)), m.group(2)))
    return out


def _slug(title: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set(HTML_ANCHOR.findall(text))
    for _, title in _headings(text):
        base = _slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        anchors.add(base if n == 0 else f"{base}-{n}")
    return anchors


def test_readme_has_a_table_of_contents_of_its_sections() -> None:
    """The README's "Contents" lists every `##` section, in order, each linked to its heading's anchor."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = [title for level, title in _headings(text) if level == 2 and title != "Contents"]
    start = text.index("## Contents\n")
    block = text[start : text.index("\n## ", start + 1)]
    entries = re.findall(r"^- \[(.+)\]\(#([^)]+)\)$", block, flags=re.M)
    assert [title for title, _ in entries] == sections
    assert [anchor for _, anchor in entries] == [_slug(title) for title in sections]


def test_anchor_links_of_the_documents_resolve() -> None:
    """A link to `#anchor`, in the same document or another one, names a heading or an `<a id>` there."""
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in ANCHOR_LINK.findall(path.read_text(encoding="utf-8")):
            doc = (path.parent / target) if target else path
            if "://" in target or doc.suffix != ".md":
                continue
            if not doc.is_file() or anchor not in _anchors(doc.read_text(encoding="utf-8")):
                broken.append(f"{path.relative_to(ROOT)}: {target}#{anchor}")
    assert not broken, "\n".join(broken)


def test_readme_quick_start_opens_with_demo_and_test_and_fits_a_screen() -> None:
    """The first commands a reader meets are `make demo` and `make test`, and the quick start stays short
    (issue #28: "the quick start in a screen"; the results it used to carry live in docs/performance.md)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert first is not None
    assert [line.split()[:2] for line in first.group(1).splitlines()] == [["make", "demo"], ["make", "test"]]
    start = text.index("## Quick start\n")
    assert text.index("## Quick start\n") < text.index("## Run it yourself on the local stack")
    assert len(text[start : text.index("\n## ", start + 1)].splitlines()) <= 40
