"""The compatibility gate through the real CLI (`python -m schemas ...`) on temporary copies of schemas/.

Each fixture edits the current impression.avsc without releasing it, as a schema author would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Edit = Callable[[dict[str, Any]], None]


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def _add(field: dict[str, Any]) -> Edit:
    return lambda s: s["fields"].append(field)


def _drop(name: str) -> Edit:
    return lambda s: s.update(fields=[f for f in s["fields"] if f["name"] != name])


def _retype(name: str, new_type: Any, **extra: Any) -> Edit:
    return lambda s: _field(s, name).update(type=new_type, **extra)


COMPATIBLE: dict[str, Edit] = {
    "new optional union field with null default": _add(
        {"name": "surface", "type": ["null", "string"], "default": None, "doc": "UI surface."}),
    "new string field with a default": _add({"name": "surface", "type": "string", "default": "feed",
                                             "doc": "UI surface."}),
    "new map field with a default and no doc": _add({"name": "tags", "type": {"type": "map", "values": "string"},
                                                     "default": {}}),
    "dropped field that had a default": _drop("context"),
    "doc and order-of-attributes change only": lambda s: _field(s, "user_id").update(doc="Who saw it."),
}

# (edit, field named in the report, rule, direction)
INCOMPATIBLE: dict[str, tuple[Edit, str, str, str]] = {
    "new required field without default": (
        _add({"name": "country", "type": "string", "doc": "Country code."}),
        "country", "reader_field_missing_default_value", "BACKWARD"),
    "changed field type string -> long": (_retype("user_id", "long"), "user_id", "type_mismatch", "BACKWARD"),
    "changed field type int -> long (old readers cannot read it)": (
        _retype("position", "long"), "position", "type_mismatch", "FORWARD"),
    "changed field type long -> int": (_retype("event_time_ms", "int"), "event_time_ms", "type_mismatch",
                                       "BACKWARD"),
    "changed map values string -> double": (
        _retype("context", {"type": "map", "values": "double"}, default={}), "context", "type_mismatch",
        "BACKWARD"),
    "dropped required field": (_drop("item_id"), "item_id", "reader_field_missing_default_value", "FORWARD"),
    "made a field nullable": (_retype("item_id", ["null", "string"], default=None), "item_id",
                              "type_mismatch", "FORWARD"),
    "renamed a required field": (lambda s: _field(s, "item_id").update(name="item"), "item",
                                 "reader_field_missing_default_value", "BACKWARD"),
}


@pytest.mark.parametrize("case", sorted(COMPATIBLE))
def test_compatible_change_passes(case: str, schemas_copy: Path, edit_schema, run_cli) -> None:
    edit_schema(schemas_copy, "impression", COMPATIBLE[case])
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    Impression" in result.stdout and "schemas check: ok" in result.stdout


@pytest.mark.parametrize("case", sorted(INCOMPATIBLE))
def test_incompatible_change_fails(case: str, schemas_copy: Path, edit_schema, run_cli) -> None:
    edit, field, rule, direction = INCOMPATIBLE[case]
    edit_schema(schemas_copy, "impression", edit)
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  Impression" in result.stdout
    lines = [line for line in result.stdout.splitlines() if line.strip().startswith("Impression: field")]
    assert any(f"field {field}" in line and rule in line and f"[{direction} vs v1]" in line for line in lines), (
        result.stdout)
    assert "FAILED" in result.stderr and "Impression" in result.stderr
    for other in ("FeatureSnapshot", "Label", "Sample", "UnmatchedLabel"):
        assert f"ok    {other}" in result.stdout  # one bad record does not hide the others
    release = run_cli("release", "Impression", "--schemas-dir", schemas_copy)
    assert release.returncode == 1 and "not released: the check failed" in release.stderr
    assert not (schemas_copy / "versions" / "impression" / "v2.avsc").exists()


@pytest.mark.parametrize(
    ("stem", "edit", "expected"),
    [
        ("sample", lambda s: _field(s, "attribution")["type"].update(name="Attribution2"),
         "field attribution.name: name_mismatch [BACKWARD vs v1]"),
        ("sample", lambda s: _field(s, "attribution")["type"]["symbols"].remove("LATE_POSITIVE"),
         "field attribution.symbols: missing_enum_symbols [BACKWARD vs v1]"),
        ("unmatched_label", lambda s: _field(s, "reason")["type"]["symbols"].append("expired"),
         "field reason.symbols: missing_enum_symbols [FORWARD vs v1]"),
        ("feature_snapshot", _retype("dense", {"type": "map", "values": "float"}, default={}),
         "field dense.values: type_mismatch [BACKWARD vs v1]"),
    ],
)
def test_named_types_and_nested_changes(stem: str, edit: Edit, expected: str, schemas_copy: Path, edit_schema,
                                        run_cli) -> None:
    edit_schema(schemas_copy, stem, edit)
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1
    assert expected in result.stdout, result.stdout


def test_renamed_record_is_refused(schemas_copy: Path, edit_schema, run_cli) -> None:
    edit_schema(schemas_copy, "impression", lambda s: s.update(name="Impression2"))
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1
    assert "record Impression has released versions but no current definition" in result.stderr


def test_only_the_named_records_are_checked(schemas_copy: Path, edit_schema, run_cli) -> None:
    edit_schema(schemas_copy, "impression", _drop("item_id"))
    assert run_cli("check", "Label", "sample", "--schemas-dir", schemas_copy).returncode == 0
    assert run_cli("check", "Impression", "--schemas-dir", schemas_copy).returncode == 1


def test_transitive_checks_every_release(schemas_copy: Path, edit_schema, run_cli) -> None:
    """v2 drops `context` (it had a default); re-adding it WITHOUT a default is compatible with v2 alone
    (BACKWARD vs the latest only) but not with v1 under *_TRANSITIVE levels."""
    edit_schema(schemas_copy, "impression", _drop("context"))
    assert run_cli("release", "Impression", "--schemas-dir", schemas_copy).returncode == 0
    edit_schema(schemas_copy, "impression", _add({"name": "context", "type": "long", "doc": "now a long"}))
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1
    assert "vs v1, v2" in result.stdout
    assert "[BACKWARD vs v1]" in result.stdout and "[BACKWARD vs v2]" in result.stdout

    compat = schemas_copy / "compat.yaml"
    compat.write_text("default: FULL_TRANSITIVE\nrecords:\n  Impression: FORWARD\n")
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 0, result.stdout + result.stderr  # v2 readers ignore the new field
    assert "FORWARD" in result.stdout and "vs v2 " in result.stdout
    compat.write_text("default: FULL_TRANSITIVE\nrecords:\n  Impression: FORWARD_TRANSITIVE\n")
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1 and "[FORWARD vs v1]" in result.stdout  # v1 readers expect a map
    compat.write_text("default: NONE\n")
    assert run_cli("check", "--schemas-dir", schemas_copy).returncode == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default: SOMETIMES\n", "unknown compatibility level 'SOMETIMES'"),
        ("records:\n  Impresion: FULL\n", "records.Impresion: no such record"),
        ("level: FULL\n", "expected the keys 'default' and 'records' only"),
        ("default: [unclosed\n", "compat.yaml: cannot read"),
    ],
)
def test_bad_compat_config(text: str, message: str, schemas_copy: Path, run_cli) -> None:
    (schemas_copy / "compat.yaml").write_text(text)
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"type": "record", "name": "Impression", "fields": [\n  {"name": "a" "type": "int"}]}',
         "impression.avsc: not valid JSON: Expecting ',' delimiter at line 2 column 16"),
        (json.dumps({"type": "record", "name": "Impression", "fields": [{"name": "a", "type": "strng"}]}),
         "impression.avsc: not a valid Avro schema: UnknownType: strng"),
        (json.dumps({"type": "record", "name": "Impression", "fields": [{"name": "a", "type": "int",
                                                                        "default": "zero"}]}),
         "impression.avsc: not a valid Avro schema"),
        (json.dumps({"type": "enum", "name": "Impression", "symbols": ["A"]}),
         "impression.avsc: the top-level schema must be a record, got 'enum'"),
        (json.dumps({"type": "record", "name": "Label", "fields": []}),
         "record Label is also defined in"),
    ],
)
def test_broken_definition_fails_clearly(content: str, message: str, schemas_copy: Path, run_cli) -> None:
    (schemas_copy / "impression.avsc").write_text(content)
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_union_default_must_match_first_branch(schemas_copy: Path, edit_schema, run_cli) -> None:
    edit_schema(schemas_copy, "impression", _add({"name": "surface", "type": ["string", "null"], "default": None,
                                                  "doc": "UI surface."}))
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1
    assert "field surface: union_default_not_first_branch" in result.stdout


def test_missing_doc_is_a_warning_unless_strict(schemas_copy: Path, edit_schema, run_cli) -> None:
    edit_schema(schemas_copy, "impression", _add({"name": "surface", "type": "string", "default": ""}))
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 0 and "warning: Impression: field 'surface' has no doc" in result.stdout
    strict = run_cli("check", "--strict", "--schemas-dir", schemas_copy)
    assert strict.returncode == 1 and "--strict" in strict.stderr


# --------------------------------------------------------------------------- arguments, help, docs


@pytest.mark.parametrize("args", [["--help"], ["check", "--help"], ["release", "--help"], ["docs", "--help"]])
def test_help(args: list[str], run_cli) -> None:
    result = run_cli(*args)
    assert result.returncode == 0 and "usage: python -m schemas" in result.stdout and "--schemas-dir" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "a command is required"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["release"], "the following arguments are required: RECORD"),
        (["release", "Nope"], "unknown record 'Nope'"),
        (["check", "Nope"], "unknown record 'Nope'"),
        (["check", "--schemas-dir", "/nonexistent/dir"], "--schemas-dir /nonexistent/dir: no such directory"),
        (["check", "--bogus"], "unrecognized arguments: --bogus"),
        (["docs", "--out", "/nonexistent/dir/out.md"], "directory /nonexistent/dir does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str, schemas_copy: Path, run_cli) -> None:
    extra = [] if any(a == "--schemas-dir" for a in args) or not args or args == ["frobnicate"] else [
        "--schemas-dir", str(schemas_copy)]
    result = run_cli(*args, *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_schemas_dir_before_the_command(schemas_copy: Path, edit_schema, run_cli) -> None:
    edit_schema(schemas_copy, "impression", _drop("item_id"))
    assert run_cli("--schemas-dir", schemas_copy, "check").returncode == 1


def test_docs(schemas_copy: Path, tmp_path: Path, run_cli) -> None:
    result = run_cli("docs", "--schemas-dir", schemas_copy)
    assert result.returncode == 0
    text = result.stdout
    for record in ("Impression", "FeatureSnapshot", "Label", "Sample", "UnmatchedLabel"):
        assert f"## {record}\n" in text
        schema = json.loads((schemas_copy / f"{_stem(record)}.avsc").read_text())
        for field in schema["fields"]:
            assert f"| `{field['name']}` |" in text
    assert "| `context` | `map<string>` | `{}` |" in text
    assert "| `label_time_ms` | `null \\| long` | `null` |" in text
    assert "enum Attribution {POSITIVE, NEGATIVE, LATE_POSITIVE}" in text
    assert "| `request_id` | `string` | required |" in text
    assert "compatibility: FULL_TRANSITIVE" in text and "released versions: v1" in text
    out = tmp_path / "SCHEMAS.md"
    written = run_cli("docs", "--out", out, "--schemas-dir", schemas_copy)
    assert written.returncode == 0 and out.read_text() == text


def _stem(record: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in record).lstrip("_")


def test_benchmark_runs() -> None:
    """`python -m schemas.bench.codec` (wired into `make bench`) runs; tiny sizes here, timings are not tested."""
    result = subprocess.run([sys.executable, "-m", "schemas.bench.codec", "--n", "200", "--repeat", "1", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["record"] for r in rows] == ["Impression", "FeatureSnapshot", "Label", "Sample", "UnmatchedLabel"]
    for r in rows:
        assert r["avro_encode_per_s"] > 0 and r["avro_decode_per_s"] > 0 and r["old_version_decode_per_s"] > 0
        assert 0 < r["avro_bytes"] < r["json_bytes"]
