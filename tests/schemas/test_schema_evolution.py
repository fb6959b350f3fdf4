"""Schema evolution: data written with an old released version, decoded by the current reader.

The new version is made the way a schema author makes it: edit the current .avsc of a temporary
copy of schemas/, pass `python -m schemas check`, `python -m schemas release RECORD`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import Codec, UnknownFingerprint
from schemas.registry import load_schema_set

IMPRESSION_V1 = {"request_id": "r1", "impression_id": "i1", "user_id": "u1", "item_id": "v9",
                 "event_time_ms": 1_700_000_000_000, "position": 4, "context": {"page": "feed"}}
SURFACE = {"name": "surface", "type": "string", "default": "feed",
           "doc": "UI surface the item was shown on."}
DWELL = {"name": "dwell_ms", "type": ["null", "long"], "default": None, "doc": "Time on screen, if known."}


def _release(run_cli, root: Path, record: str = "Impression") -> None:
    check = run_cli("check", "--schemas-dir", root)
    assert check.returncode == 0, check.stdout + check.stderr
    release = run_cli("release", record, "--schemas-dir", root)
    assert release.returncode == 0, release.stdout + release.stderr


def test_v1_data_decodes_to_v2_with_defaults(copy_schemas, edit_schema, run_cli) -> None:
    old_dir = copy_schemas("old")  # producers still on v1 (the shipped schemas)
    new_dir = copy_schemas("new")  # consumers on v2
    edit_schema(new_dir, "impression", lambda s: s["fields"].extend([SURFACE, DWELL]))
    _release(run_cli, new_dir)
    check = run_cli("check", "--schemas-dir", new_dir)
    assert check.returncode == 0 and "vs v1, v2" in check.stdout, check.stdout + check.stderr
    assert (new_dir / "versions" / "impression" / "v2.avsc").read_bytes() == (
        new_dir / "impression.avsc").read_bytes()

    old, new = Codec.from_dir(old_dir), Codec.from_dir(new_dir)
    assert old.fingerprint("Impression") != new.fingerprint("Impression")
    v1_bytes = old.encode("Impression", IMPRESSION_V1)
    assert v1_bytes[2:10] == old.fingerprint("Impression")

    name, record = new.decode(v1_bytes)
    assert name == "Impression"
    assert record == {**IMPRESSION_V1, "surface": "feed", "dwell_ms": None}
    assert new.decode(v1_bytes, expected="Impression") == record
    assert new.known_fingerprints()[v1_bytes[2:10]] == ("Impression", "v1")

    v2_bytes = new.encode("Impression", {**IMPRESSION_V1, "surface": "search", "dwell_ms": 1234})
    assert new.decode(v2_bytes) == ("Impression", {**IMPRESSION_V1, "surface": "search", "dwell_ms": 1234})
    with pytest.raises(UnknownFingerprint, match=v2_bytes[2:10].hex()):
        old.decode(v2_bytes)  # a reader learns new versions from schemas/, never from the wire


def test_a_dropped_optional_field_and_unreleased_current(copy_schemas, edit_schema, run_cli) -> None:
    """v2 drops `context` (it has a default); an unreleased v3 adds a field: all three decode to v3."""
    root = copy_schemas("evolving")
    v1 = Codec.from_dir(root)
    edit_schema(root, "impression", lambda s: s.update(fields=[f for f in s["fields"] if f["name"] != "context"]))
    _release(run_cli, root)
    v2 = Codec.from_dir(root)
    edit_schema(root, "impression", lambda s: s["fields"].append(SURFACE))
    check = run_cli("check", "--schemas-dir", root)
    assert check.returncode == 0 and "vs v1, v2" in check.stdout, check.stdout + check.stderr
    v3 = Codec.from_dir(root)  # the current definition is decodable before it is released

    v2_record = {k: v for k, v in IMPRESSION_V1.items() if k != "context"}
    expected = {**v2_record, "surface": "feed"}
    assert v3.decode(v1.encode("Impression", IMPRESSION_V1)) == ("Impression", expected)
    assert v3.decode(v2.encode("Impression", v2_record)) == ("Impression", expected)
    assert v3.decode(v3.encode("Impression", expected)) == ("Impression", expected)
    assert v2.decode(v1.encode("Impression", IMPRESSION_V1)) == ("Impression", v2_record)
    assert [v.label for v in load_schema_set(root).record("Impression").all_versions] == ["v1", "v2", "current"]


def test_release_refuses_an_identical_definition(schemas_copy: Path, edit_schema, run_cli) -> None:
    result = run_cli("release", "Impression", "--schemas-dir", schemas_copy)
    assert result.returncode == 1
    assert "identical to the latest release v1" in result.stderr
    # docs are not part of a version (not in the Parsing Canonical Form)
    edit_schema(schemas_copy, "impression", lambda s: s["fields"][0].update(doc="reworded"))
    result = run_cli("release", "impression", "--schemas-dir", schemas_copy)
    assert result.returncode == 1 and "only docs" in result.stderr
    assert not (schemas_copy / "versions" / "impression" / "v2.avsc").exists()


def test_release_updates_the_manifest(schemas_copy: Path, edit_schema, run_cli) -> None:
    before = json.loads((schemas_copy / "versions" / "manifest.json").read_text())
    edit_schema(schemas_copy, "label", lambda s: s["fields"].append(
        {"name": "source", "type": "string", "default": "", "doc": "Producer of the label."}))
    result = run_cli("release", "label.avsc", "--schemas-dir", schemas_copy)
    assert result.returncode == 0, result.stderr
    assert "released Label v2" in result.stdout
    after = json.loads((schemas_copy / "versions" / "manifest.json").read_text())
    assert after["records"]["Label"][0] == before["records"]["Label"][0]  # append-only
    entry = after["records"]["Label"][1]
    assert entry["version"] == 2 and entry["file"] == "label/v2.avsc"
    assert entry["fingerprint"] == Codec.from_dir(schemas_copy).fingerprint("Label").hex()
    assert {k: v for k, v in after["records"].items() if k != "Label"} == {
        k: v for k, v in before["records"].items() if k != "Label"}
    again = run_cli("release", "Label", "--schemas-dir", schemas_copy)
    assert again.returncode == 1 and "identical to the latest release v2" in again.stderr
