"""Loading a schema directory: the current definitions, the released versions and their manifest.

Layout of a schema directory (the package directory by default)::

    impression.avsc ... sample.avsc        current definition of each record (edited by schema authors)
    compat.yaml                            compatibility level per record (see compat.py)
    versions/manifest.json                 the released versions: file, sha256, fingerprint
    versions/<stem>/v<N>.avsc              released version N of the record defined in <stem>.avsc

Released versions are immutable: loading fails when a released file's sha256 no longer matches the
manifest, when a listed file is missing, or when a file under versions/ is not listed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from .errors import SchemaDefinitionError, UnknownRecord

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST_NAME = "manifest.json"
VERSIONS_DIR = "versions"
MANIFEST_FORMAT = 1
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


def crc64_avro(data: bytes) -> bytes:
    """CRC-64-AVRO (Rabin) fingerprint of `data`, as the 8 little-endian bytes of single-object encoding."""
    return bytes.fromhex(_fastavro_fingerprint(data.decode("utf-8"), "CRC-64-AVRO"))


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, with CRLF line ends read as LF (so a Windows checkout verifies too)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


@dataclass(frozen=True)
class SchemaVersion:
    """One definition of a record: a released version (version >= 1) or the current one (version None)."""

    record: str
    version: int | None
    path: Path
    schema: dict[str, Any]  # the JSON of the .avsc file, as written
    canonical: str  # Parsing Canonical Form
    fingerprint: bytes  # CRC-64-AVRO of the canonical form, 8 bytes little-endian

    @property
    def label(self) -> str:
        return "current" if self.version is None else f"v{self.version}"

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


@dataclass(frozen=True)
class RecordDef:
    """A record: its current definition and its released versions, oldest first."""

    name: str
    stem: str
    current: SchemaVersion
    released: tuple[SchemaVersion, ...] = ()

    @property
    def latest(self) -> SchemaVersion | None:
        return self.released[-1] if self.released else None

    @property
    def all_versions(self) -> tuple[SchemaVersion, ...]:
        return (*self.released, self.current)


@dataclass(frozen=True)
class SchemaSet:
    root: Path
    records: dict[str, RecordDef] = field(default_factory=dict)

    def record(self, name: str) -> RecordDef:
        try:
            return self.records[name]
        except KeyError:
            raise UnknownRecord(
                f"unknown record {name!r}; the schemas in {self.root} define: {', '.join(self.records)}"
            ) from None

    def resolve_name(self, name: str) -> RecordDef:
        """Find a record by its name (Sample), its file stem (sample) or file name (sample.avsc)."""
        wanted = name.strip()
        wanted = wanted[: -len(".avsc")] if wanted.endswith(".avsc") else wanted
        for rec in self.records.values():
            if wanted in (rec.name, rec.stem) or wanted.lower() in (rec.name.lower(), rec.stem.lower()):
                return rec
        return self.record(name)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def read_schema_file(path: Path, root: Path | None = None) -> dict[str, Any]:
    """Read and check one .avsc file: valid JSON, a named record, parsable by fastavro."""
    shown = _rel(path, root) if root is not None else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaDefinitionError(f"{shown}: cannot read: {exc}") from exc
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaDefinitionError(
            f"{shown}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(schema, dict) or schema.get("type") != "record":
        got = schema.get("type") if isinstance(schema, dict) else type(schema).__name__
        raise SchemaDefinitionError(f"{shown}: the top-level schema must be a record, got {got!r}")
    if not isinstance(schema.get("name"), str) or not schema["name"]:
        raise SchemaDefinitionError(f"{shown}: the record has no name")
    try:
        fastavro.parse_schema(schema)
    except Exception as exc:  # fastavro raises SchemaParseException, UnknownType, ValueError, ...
        raise SchemaDefinitionError(
            f"{shown}: not a valid Avro schema: {type(exc).__name__}: {exc}"
        ) from exc
    return schema


def short_name(schema: dict[str, Any]) -> str:
    return str(schema["name"]).rsplit(".", 1)[-1]


def full_name(schema: dict[str, Any]) -> str:
    name = str(schema["name"])
    if "." in name or not schema.get("namespace"):
        return name
    return f"{schema['namespace']}.{name}"


def make_version(record: str, version: int | None, path: Path, schema: dict[str, Any]) -> SchemaVersion:
    canonical = to_parsing_canonical_form(fastavro.parse_schema(schema))
    return SchemaVersion(
        record=record,
        version=version,
        path=path,
        schema=schema,
        canonical=canonical,
        fingerprint=crc64_avro(canonical.encode("utf-8")),
    )


def manifest_path(root: Path) -> Path:
    return root / VERSIONS_DIR / MANIFEST_NAME


def read_manifest(root: Path) -> dict[str, list[dict[str, Any]]]:
    """The released versions per record name, as listed in versions/manifest.json (empty if none)."""
    path = manifest_path(root)
    if not path.exists():
        return {}
    shown = _rel(path, root)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaDefinitionError(f"{shown}: cannot read: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(
        data.get("records"), dict
    ):
        raise SchemaDefinitionError(
            f"{shown}: expected an object with \"format\": {MANIFEST_FORMAT} and \"records\": {{...}}"
        )
    records: dict[str, list[dict[str, Any]]] = {}
    for name, entries in data["records"].items():
        if not isinstance(entries, list):
            raise SchemaDefinitionError(f"{shown}: records.{name} must be a list of versions")
        for i, entry in enumerate(entries, 1):
            if (
                not isinstance(entry, dict)
                or entry.get("version") != i
                or not all(isinstance(entry.get(k), str) for k in ("file", "sha256", "fingerprint"))
            ):
                raise SchemaDefinitionError(
                    f"{shown}: records.{name}[{i - 1}] must be "
                    f'{{"version": {i}, "file": ..., "sha256": ..., "fingerprint": ...}}, got {entry!r}'
                )
        records[name] = entries
    return records


def manifest_text(records: dict[str, list[dict[str, Any]]]) -> str:
    """The manifest file's text for ``records`` (written by `python -m schemas release`)."""
    body = {
        "format": MANIFEST_FORMAT,
        "comment": "Released schema versions (immutable). Written by `python -m schemas release RECORD`; "
        "do not edit by hand. sha256 is of the file's bytes (CRLF read as LF); fingerprint is CRC-64-AVRO of the "
        "Parsing Canonical Form, as in the single-object encoding header (little-endian hex).",
        "records": {name: records[name] for name in sorted(records)},
    }
    return json.dumps(body, indent=2) + "\n"


def load_schema_set(root: Path | str | None = None) -> SchemaSet:
    """Load and verify a schema directory; raises SchemaDefinitionError naming the file and the problem."""
    root = Path(root) if root is not None else PACKAGE_DIR
    if not root.is_dir():
        raise SchemaDefinitionError(f"schema directory {root} does not exist")

    currents: dict[str, tuple[str, Path, dict[str, Any]]] = {}
    for path in sorted(root.glob("*.avsc")):
        schema = read_schema_file(path, root)
        name = short_name(schema)
        if name in currents:
            raise SchemaDefinitionError(
                f"{path.name}: record {name} is also defined in {currents[name][1].name}"
            )
        currents[name] = (path.stem, path, schema)
    if not currents:
        raise SchemaDefinitionError(f"no .avsc files in {root}")

    manifest = read_manifest(root)
    versions_dir = root / VERSIONS_DIR
    listed: set[Path] = set()
    released: dict[str, list[SchemaVersion]] = {}
    for name, entries in manifest.items():
        if name not in currents:
            raise SchemaDefinitionError(
                f"{_rel(manifest_path(root), root)}: record {name} has released versions but no current "
                f"definition among {', '.join(sorted(p.name for _, p, _ in currents.values()))}"
            )
        out: list[SchemaVersion] = []
        for entry in entries:
            path = versions_dir / entry["file"]
            shown = _rel(path, root)
            listed.add(path.resolve())
            if not path.is_file():
                raise SchemaDefinitionError(f"{shown}: released {name} v{entry['version']} is missing")
            digest = sha256_file(path)
            if digest != entry["sha256"]:
                raise SchemaDefinitionError(
                    f"{shown}: released {name} v{entry['version']} was edited (sha256 {digest}, manifest says "
                    f"{entry['sha256']}); released versions are immutable: restore the file and put the "
                    f"change in {currents[name][1].name}, then `python -m schemas release {name}`"
                )
            schema = read_schema_file(path, root)
            if short_name(schema) != name:
                raise SchemaDefinitionError(f"{shown}: defines {short_name(schema)}, expected {name}")
            ver = make_version(name, entry["version"], path, schema)
            if ver.fingerprint_hex != entry["fingerprint"]:
                raise SchemaDefinitionError(
                    f"{shown}: fingerprint {ver.fingerprint_hex} differs from the manifest's "
                    f"{entry['fingerprint']}"
                )
            out.append(ver)
        released[name] = out
    if versions_dir.is_dir():
        for path in sorted(versions_dir.rglob("*.avsc")):
            if path.resolve() not in listed:
                raise SchemaDefinitionError(
                    f"{_rel(path, root)}: not listed in {_rel(manifest_path(root), root)}; released versions "
                    "are added only by `python -m schemas release RECORD`"
                )

    records: dict[str, RecordDef] = {}
    for name, (stem, path, schema) in currents.items():
        records[name] = RecordDef(
            name=name,
            stem=stem,
            current=make_version(name, None, path, schema),
            released=tuple(released.get(name, ())),
        )
    return SchemaSet(root=root, records=records)


def next_version_file(rec: RecordDef) -> tuple[int, str]:
    """(number, path relative to versions/) of the next release of `rec`."""
    number = (rec.latest.version or 0) + 1 if rec.latest else 1
    return number, f"{rec.stem}/v{number}.avsc"


def is_version_file(name: str) -> bool:
    return _VERSION_FILE.match(name) is not None
