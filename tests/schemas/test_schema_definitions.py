"""The shipped .avsc definitions, their released versions and the immutability of releases."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import avro.schema
import pytest

from schemas import Codec, SchemaDefinitionError
from schemas.registry import PACKAGE_DIR, load_schema_set

# docs/wire-format.md (contract): the fields of each JSON form, in order, without the events' "type".
CONTRACT = {
    "impression": ("Impression", ["request_id", "impression_id", "user_id", "item_id", "event_time_ms",
                                  "position", "context"]),
    "feature_snapshot": ("FeatureSnapshot", ["request_id", "event_time_ms", "sparse", "dense"]),
    "label": ("Label", ["request_id", "impression_id", "label_type", "event_time_ms", "value"]),
    "sample": ("Sample", ["sample_id", "task", "request_id", "impression_id", "user_id", "item_id", "position",
                          "context", "impression_time_ms", "label", "attribution", "label_time_ms", "delay_ms",
                          "emit_time_ms", "sparse", "dense", "has_snapshot"]),
    "unmatched_label": ("UnmatchedLabel", ["request_id", "impression_id", "label_type", "event_time_ms", "value",
                                           "reason"]),
}


def _current(stem: str) -> dict:
    return json.loads((PACKAGE_DIR / f"{stem}.avsc").read_text())


@pytest.mark.parametrize("stem", sorted(CONTRACT))
def test_definition_has_the_contract_fields_and_docs(stem: str) -> None:
    name, fields = CONTRACT[stem]
    schema = _current(stem)
    assert schema["type"] == "record"
    assert schema["name"] == name
    assert schema["namespace"] == "odl"
    names = [f["name"] for f in schema["fields"]]
    assert [n for n in names if n in fields] == fields, "the contract fields, in the contract's order"
    added = [f["name"] for f in schema["fields"] if f["name"] not in fields and "default" not in f]
    assert not added, f"fields beyond the contract must be optional (have a default): {added}"
    assert schema.get("doc")
    undocumented = [f["name"] for f in schema["fields"] if not str(f.get("doc", "")).strip()]
    assert not undocumented, f"{stem}.avsc: fields without doc: {undocumented}"


def test_optional_fields_and_defaults_follow_design() -> None:
    by_name = {stem: {f["name"]: f for f in _current(stem)["fields"]} for stem in CONTRACT}
    assert by_name["impression"]["position"]["default"] == 0
    assert by_name["impression"]["context"]["default"] == {}
    assert by_name["feature_snapshot"]["sparse"]["type"] == {"type": "map", "values": "string"}
    assert by_name["feature_snapshot"]["dense"]["type"] == {"type": "map", "values": "double"}
    assert by_name["feature_snapshot"]["sparse"]["default"] == {} == by_name["feature_snapshot"]["dense"]["default"]
    assert by_name["label"]["value"]["default"] == 1.0
    sample = by_name["sample"]
    assert sample["attribution"]["type"]["symbols"] == ["POSITIVE", "NEGATIVE", "LATE_POSITIVE"]
    for nullable in ("label_time_ms", "delay_ms"):
        assert sample[nullable]["type"] == ["null", "long"]
        assert sample[nullable]["default"] is None
    assert by_name["unmatched_label"]["reason"]["type"]["symbols"] == ["no_impression", "beyond_horizon",
                                                                        "duplicate"]


def test_every_record_has_a_released_version() -> None:
    schema_set = load_schema_set()
    assert sorted(schema_set.records) == sorted(name for name, _ in CONTRACT.values())
    for rec in schema_set.records.values():
        assert rec.released, f"{rec.name} has no released version"
        assert rec.released[0].version == 1
        assert rec.released[0].path == PACKAGE_DIR / "versions" / rec.stem / "v1.avsc"


def test_fingerprints_agree_with_the_avro_package() -> None:
    """Our CRC-64-AVRO of the Parsing Canonical Form equals the reference implementation's."""
    schema_set = load_schema_set()
    for rec in schema_set.records.values():
        for ver in rec.all_versions:
            reference = avro.schema.parse(ver.path.read_text())
            assert ver.canonical == reference.canonical_form
            assert ver.fingerprint == reference.fingerprint("CRC-64-AVRO")
        assert Codec.default().fingerprint(rec.name) == rec.current.fingerprint


def test_released_versions_are_unchanged() -> None:
    """Immutability: every released file still has the sha256 recorded when it was released, every
    listed file exists and every file under versions/ is listed. Edit the current .avsc instead, and
    release it with `python -m schemas release RECORD`."""
    versions = PACKAGE_DIR / "versions"
    manifest = json.loads((versions / "manifest.json").read_text())
    listed = set()
    for name, entries in manifest["records"].items():
        for number, entry in enumerate(entries, 1):
            assert entry["version"] == number, f"{name}: versions must be numbered 1, 2, ..."
            path = versions / entry["file"]
            listed.add(path)
            assert path.is_file(), f"released {name} v{number} ({path}) is missing"
            digest = hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()
            assert digest == entry["sha256"], (
                f"released {name} v{number} ({path}) was edited: released versions are immutable"
            )
            reference = avro.schema.parse(path.read_text())
            assert reference.fingerprint("CRC-64-AVRO").hex() == entry["fingerprint"]
    on_disk = set(versions.rglob("*.avsc"))
    assert on_disk == listed, f"files under versions/ not in the manifest: {sorted(on_disk - listed)}"


def test_an_edited_release_is_refused(schemas_copy: Path, run_cli) -> None:
    released = schemas_copy / "versions" / "impression" / "v1.avsc"
    schema = json.loads(released.read_text())
    schema["fields"][0]["doc"] = "an innocent-looking doc change"
    released.write_text(json.dumps(schema, indent=2))
    with pytest.raises(SchemaDefinitionError, match=r"versions/impression/v1.avsc: released Impression v1 was "
                                                    r"edited"):
        Codec.from_dir(schemas_copy)
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1
    assert "versions/impression/v1.avsc" in result.stderr and "immutable" in result.stderr


def test_an_unlisted_or_missing_release_is_refused(schemas_copy: Path, run_cli) -> None:
    extra = schemas_copy / "versions" / "impression" / "v2.avsc"
    extra.write_bytes((schemas_copy / "impression.avsc").read_bytes())
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1 and "v2.avsc: not listed" in result.stderr
    extra.unlink()
    (schemas_copy / "versions" / "label" / "v1.avsc").unlink()
    result = run_cli("check", "--schemas-dir", schemas_copy)
    assert result.returncode == 1 and "released Label v1 is missing" in result.stderr


def test_shipped_schemas_pass_the_gate(run_cli) -> None:
    result = run_cli("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "schemas check: ok" in result.stdout
    for name, _ in CONTRACT.values():
        assert f"ok    {name}" in result.stdout
    assert "warning" not in result.stdout
