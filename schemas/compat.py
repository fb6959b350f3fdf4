"""The compatibility gate: each current definition against the released versions of its record.

The verdict comes from ``avro.compatibility.ReaderWriterCompatibilityChecker`` (the `avro` package;
fastavro has no checker). Levels, as in Confluent's schema registry, configured per record in
compat.yaml (default FULL_TRANSITIVE):

- BACKWARD: the current schema can read data written with the latest release;
- FORWARD: the latest release can read data written with the current schema;
- FULL: both; the *_TRANSITIVE variants check against every release, not just the latest;
- NONE: no check.

Besides the checker, the gate rejects definitions that Avro implementations disagree on (a union
field whose default does not match the union's first branch) and warns about fields without `doc`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SchemaDefinitionError
from .registry import RecordDef, SchemaSet, SchemaVersion

COMPAT_FILE = "compat.yaml"
LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
DEFAULT_LEVEL = "FULL_TRANSITIVE"

_EXPLAIN = {
    "reader_field_missing_default_value": "the reader has a field with no default that the writer lacks",
    "type_mismatch": "the writer's type cannot be read as, or promoted to, the reader's type",
    "missing_union_branch": "the reader's union lacks a type the writer may write",
    "missing_enum_symbols": "the writer has enum symbols the reader lacks (and the reader enum has no default)",
    "name_mismatch": "the named type was renamed (no matching alias)",
    "fixed_size_mismatch": "the fixed size changed",
}


@dataclass(frozen=True)
class CompatConfig:
    default: str = DEFAULT_LEVEL
    records: dict[str, str] = field(default_factory=dict)

    def level(self, record: str) -> str:
        return self.records.get(record, self.default)


def _level(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.strip().upper() not in LEVELS:
        raise SchemaDefinitionError(f"{where}: unknown compatibility level {value!r}; use one of {', '.join(LEVELS)}")
    return value.strip().upper()


def load_compat_config(root: Path, record_names: list[str] | None = None) -> CompatConfig:
    """Read compat.yaml (absent: FULL_TRANSITIVE everywhere)."""
    path = root / COMPAT_FILE
    if not path.exists():
        return CompatConfig()
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SchemaDefinitionError(f"{COMPAT_FILE}: cannot read: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict) or set(data) - {"default", "records"}:
        raise SchemaDefinitionError(f"{COMPAT_FILE}: expected the keys 'default' and 'records' only")
    default = _level(data.get("default", DEFAULT_LEVEL), f"{COMPAT_FILE}: default")
    records_raw = data.get("records") or {}
    if not isinstance(records_raw, dict):
        raise SchemaDefinitionError(f"{COMPAT_FILE}: 'records' must map record names to levels")
    records = {}
    for name, value in records_raw.items():
        if record_names is not None and name not in record_names:
            raise SchemaDefinitionError(
                f"{COMPAT_FILE}: records.{name}: no such record (known: {', '.join(record_names)})"
            )
        records[str(name)] = _level(value, f"{COMPAT_FILE}: records.{name}")
    return CompatConfig(default=default, records=records)


@dataclass(frozen=True)
class Issue:
    """One reason why a pair (reader, writer) is incompatible, or a definition problem."""

    record: str
    against: str  # "v1", ... or "definition"
    direction: str  # "BACKWARD", "FORWARD" or "DEFINITION"
    field: str  # dotted path of the field, or "(record)"
    rule: str  # the checker's incompatibility type, or our own rule name
    detail: str

    def __str__(self) -> str:
        return f"{self.record}: field {self.field}: {self.rule} [{self.direction} vs {self.against}] — {self.detail}"


@dataclass
class RecordReport:
    record: str
    level: str
    checked: list[str] = field(default_factory=list)  # e.g. ["v1"]
    issues: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def _avro_parse(ver: SchemaVersion) -> Any:
    import avro.errors
    import avro.schema

    try:
        return avro.schema.parse(json.dumps(ver.schema))
    except (avro.errors.AvroException, ValueError, TypeError) as exc:
        raise SchemaDefinitionError(
            f"{ver.path.name}: the avro package rejects {ver.record} {ver.label}: {exc}"
        ) from exc


def _field_path(schema: Any, location: str) -> str:
    """Translate a checker location like '/fields/5/type/values' into 'context.values'."""
    parts = [p for p in location.split("/") if p]
    names: list[str] = []
    node = schema
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == "fields" and i + 1 < len(parts) and parts[i + 1].isdigit():
            idx = int(parts[i + 1])
            fields = getattr(node, "fields", None) or []
            if idx < len(fields):
                names.append(fields[idx].name)
                node = fields[idx].type
            else:
                names.append(f"#{idx}")
            i += 2
            continue
        if part == "type":
            i += 1
            continue
        if part in ("items", "values"):
            node = getattr(node, part, node)
        elif part.isdigit():
            schemas = getattr(node, "schemas", None)
            if schemas and int(part) < len(schemas):
                node = schemas[int(part)]
            part = f"branch {part}"
        names.append(part)
        i += 1
    return ".".join(names) if names else "(record)"


def compare(reader: SchemaVersion, writer: SchemaVersion, direction: str, against: str) -> list[Issue]:
    """Issues that keep `reader` from reading data written with `writer` (empty when compatible)."""
    from avro.compatibility import (
        ReaderWriterCompatibilityChecker,
        SchemaCompatibilityType,
        lookup_writer_field,
    )

    r_schema, w_schema = _avro_parse(reader), _avro_parse(writer)
    result = ReaderWriterCompatibilityChecker().get_compatibility(r_schema, w_schema)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    record = reader.record
    issues: list[Issue] = []
    # The checker merges its findings into sets; check field by field to name each one precisely.
    if r_schema.fullname != w_schema.fullname:
        issues.append(
            Issue(record, against, direction, "(record)", "name_mismatch",
                  f"record {w_schema.fullname} renamed to {r_schema.fullname}")
        )
    for r_field in r_schema.fields:
        w_field = lookup_writer_field(writer_schema=w_schema, reader_field=r_field)
        if w_field is None:
            if not r_field.has_default:
                if direction == "BACKWARD":
                    detail = (f"field {r_field.name!r} is new and has no default, so data written with "
                              f"{against} cannot be read by the current schema; give it a default")
                else:
                    detail = (f"field {r_field.name!r} of {against} has no default and is missing from the "
                              f"current schema, so readers still on {against} cannot read new data; "
                              "a required field cannot be dropped")
                issues.append(Issue(record, against, direction, r_field.name,
                                    "reader_field_missing_default_value", detail))
            continue
        sub = ReaderWriterCompatibilityChecker().get_compatibility(r_field.type, w_field.type)
        if sub.compatibility is not SchemaCompatibilityType.incompatible:
            continue
        rules = sorted({t.value for t in sub.incompatibilities})
        locations = sorted(sub.locations)
        where = {_field_path(r_field.type, loc) for loc in locations} - {"(record)"}
        path = r_field.name + ("." + ",".join(sorted(where)) if where else "")
        reader_side = "current" if direction == "BACKWARD" else against
        writer_side = against if direction == "BACKWARD" else "current"
        detail = (f"{reader_side} type {json.dumps(_type_json(r_field.type))} cannot read "
                  f"{writer_side} type {json.dumps(_type_json(w_field.type))}: "
                  + "; ".join(sorted(sub.messages)))
        issues.append(Issue(record, against, direction, path, ",".join(rules), detail))
    if not issues:  # a finding the field-by-field walk did not attribute: report the checker's own words
        issues.append(
            Issue(record, against, direction, ",".join(sorted(result.locations)),
                  ",".join(sorted({t.value for t in result.incompatibilities})), "; ".join(sorted(result.messages)))
        )
    for issue in issues:
        rule = issue.rule.split(",")[0]
        if rule in _EXPLAIN and _EXPLAIN[rule] not in issue.detail:
            object.__setattr__(issue, "detail", f"{issue.detail} ({_EXPLAIN[rule]})")
    return issues


def _type_json(schema: Any) -> Any:
    try:
        out = schema.to_json()
    except Exception:  # pragma: no cover - defensive
        return str(schema)
    if isinstance(out, dict):
        out = {k: v for k, v in out.items() if k != "doc"}
    return out


def _first_branch_issues(rec: RecordDef) -> list[Issue]:
    """Union defaults must match the first branch (Avro spec); Java rejects such schemas."""
    from fastavro.validation import validate as fastavro_validate

    issues: list[Issue] = []
    for f in rec.current.schema.get("fields", []):
        ftype = f.get("type")
        if isinstance(ftype, list) and ftype and "default" in f:
            first = ftype[0]
            try:
                ok = fastavro_validate(f["default"], first, raise_errors=False)
            except Exception:
                ok = False
            if not ok:
                issues.append(
                    Issue(rec.name, "definition", "DEFINITION", f["name"], "union_default_not_first_branch",
                          f"default {json.dumps(f['default'])} must match the union's first branch "
                          f"{json.dumps(first)} (Avro spec); put that branch first")
                )
    return issues


def _doc_warnings(rec: RecordDef) -> list[str]:
    return [
        f"{rec.name}: field {f.get('name')!r} has no doc"
        for f in rec.current.schema.get("fields", [])
        if not str(f.get("doc") or "").strip()
    ]


def check_record(rec: RecordDef, level: str) -> RecordReport:
    report = RecordReport(record=rec.name, level=level)
    report.issues.extend(_first_branch_issues(rec))
    report.warnings.extend(_doc_warnings(rec))
    _avro_parse(rec.current)  # a definition the avro package rejects fails here, even with no release
    if level == "NONE" or not rec.released:
        return report
    targets = rec.released if level.endswith("_TRANSITIVE") else rec.released[-1:]
    for old in targets:
        report.checked.append(old.label)
        if old.fingerprint == rec.current.fingerprint:
            continue
        if level.startswith(("BACKWARD", "FULL")):
            report.issues.extend(compare(rec.current, old, "BACKWARD", old.label))
        if level.startswith(("FORWARD", "FULL")):
            report.issues.extend(compare(old, rec.current, "FORWARD", old.label))
    return report


def check_schema_set(schema_set: SchemaSet, records: list[str] | None = None) -> list[RecordReport]:
    config = load_compat_config(schema_set.root, list(schema_set.records))
    names = records if records is not None else list(schema_set.records)
    return [check_record(schema_set.record(name), config.level(name)) for name in names]
