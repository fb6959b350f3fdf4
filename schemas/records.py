"""The records' field lists and enum symbols, read from the current ``.avsc`` files: one definition.

Every runtime form of a record (the join core's value types, JSON forms, positional byte layouts)
takes its field order and its enums from here, and :func:`check_fields` lets a module fail at import
when a hand-typed form and its schema disagree (``Codec.encode`` fills defaults, so a field missing
from a form would otherwise be silent); :func:`check_view` does the same for a view that carries only
the fields its reader uses (the trainer's sample) and names the ones it leaves out. See
docs/wire-format.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import SchemaDefinitionError

_DIR = Path(__file__).resolve().parent
_FILES = {
    "Impression": "impression.avsc",
    "FeatureSnapshot": "feature_snapshot.avsc",
    "Label": "label.avsc",
    "Sample": "sample.avsc",
    "UnmatchedLabel": "unmatched_label.avsc",
}


def _load(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((_DIR / _FILES[name]).read_text(encoding="utf-8"))
    if schema.get("name") != name:
        raise SchemaDefinitionError(f"{_FILES[name]} defines {schema.get('name')!r}, expected {name!r}")
    return schema


SCHEMAS: dict[str, dict[str, Any]] = {name: _load(name) for name in _FILES}

#: record name -> its field names, in schema order
FIELDS: dict[str, tuple[str, ...]] = {
    name: tuple(f["name"] for f in schema["fields"]) for name, schema in SCHEMAS.items()
}

#: record name -> {field name: default} for the fields that have one
DEFAULTS: dict[str, dict[str, Any]] = {
    name: {f["name"]: f["default"] for f in schema["fields"] if "default" in f} for name, schema in SCHEMAS.items()
}


def enum_symbols(record: str, field: str) -> tuple[str, ...]:
    """The symbols of the enum field ``field`` of ``record``."""
    for f in SCHEMAS[record]["fields"]:
        if f["name"] == field:
            t = f["type"]
            if isinstance(t, dict) and t.get("type") == "enum":
                return tuple(t["symbols"])
            raise SchemaDefinitionError(f"{record}.{field} is not an enum")
    raise SchemaDefinitionError(f"{record} has no field {field!r}")


IMPRESSION_FIELDS = FIELDS["Impression"]
SNAPSHOT_FIELDS = FIELDS["FeatureSnapshot"]
LABEL_FIELDS = FIELDS["Label"]
SAMPLE_FIELDS = FIELDS["Sample"]
UNMATCHED_FIELDS = FIELDS["UnmatchedLabel"]

#: the symbols of Sample.attribution and UnmatchedLabel.reason, in schema order
ATTRIBUTIONS: tuple[str, ...] = enum_symbols("Sample", "attribution")
UNMATCHED_REASONS: tuple[str, ...] = enum_symbols("UnmatchedLabel", "reason")

# Value rules beyond the Avro types, one definition for both halves: the join refuses an input event
# that breaks one (a dead letter naming the field and the bound), the pydantic models and the
# trainer's contract derived from them refuse a record that does, so the join never emits what the
# trainer would refuse. ``position``: a zero-based slot in the result list (an Avro int, never negative).
POSITION_MIN = 0
POSITION_MAX = 2**31 - 1

#: the JSON ``type`` of each input event <-> its record name
EVENT_TYPES: dict[str, str] = {"impression": "Impression", "feature_snapshot": "FeatureSnapshot", "label": "Label"}
EVENT_TYPE_OF: dict[str, str] = {record: tag for tag, record in EVENT_TYPES.items()}


def check_fields(record: str, names: Iterable[str], form: str) -> None:
    """Raise SchemaDefinitionError unless ``names`` are exactly ``record``'s fields, in schema order."""
    got = tuple(names)
    want = FIELDS[record]
    if got != want:
        missing = [n for n in want if n not in got]
        extra = [n for n in got if n not in want]
        raise SchemaDefinitionError(
            f"{form} does not match the {record} schema ({_FILES[record]}): "
            f"missing {missing}, unknown {extra}, order {list(got)} vs {list(want)}"
        )


def check_view(record: str, names: Iterable[str], form: str, *, leaves_out: Iterable[str] = ()) -> None:
    """Raise SchemaDefinitionError unless a view of ``record`` (a form that carries only the fields its
    reader uses, in its own order) has only ``record``'s fields, each once, and leaves out exactly the
    fields it says it does: a field added to the schema must be taken or named as left out."""
    got, skipped = tuple(names), tuple(leaves_out)
    want = FIELDS[record]
    missing = [n for n in want if n not in got and n not in skipped]
    extra = [n for n in (*got, *skipped) if n not in want]
    twice = sorted({n for n in (*got, *skipped) if (*got, *skipped).count(n) > 1})
    if missing or extra or twice:
        raise SchemaDefinitionError(
            f"{form} does not match the {record} schema ({_FILES[record]}): missing {missing} (take them or "
            f"leave them out by name), unknown {extra}, named twice {twice}"
        )


def check_symbols(record: str, field: str, symbols: Iterable[str], form: str) -> None:
    """Raise SchemaDefinitionError unless ``symbols`` are exactly the enum's symbols (any order)."""
    got, want = set(symbols), set(enum_symbols(record, field))
    if got != want:
        raise SchemaDefinitionError(
            f"{form} does not match {record}.{field} ({_FILES[record]}): missing {sorted(want - got)}, "
            f"unknown {sorted(got - want)}"
        )
