"""Delta exports: between full exports, only what changed since the previous version.

A version is a full export (a SavedModel) or a **delta** under ``<version>/delta/``: the rows of the
served variables that changed since the previous version (a whole variable when most of it changed),
what changed in ``trainer.json`` (the step, the delay model), and the vocabulary changes (IDs admitted
and evicted, with their slots, and the per-ID statistics that moved). It names its parent (the previous
version), its base (the full export the chain starts from) and its chain (the versions since the base,
in order). :func:`materialize` applies a chain onto its base and writes the delta's version as a full
SavedModel; ``python -m trainer materialize`` does it from the command line (docs/serving.md).

Changed rows are found by comparing values, not by tracking the rows each batch looked up: Adam moves
every row whose moments are not yet zero, so a row keeps changing for ~100 steps after its last use,
and a touched-rows set would miss those changes. The comparison (bitwise, against a copy of the
previous version's served values) finds exactly what changed; it costs that copy and one pass over the
served variables per export.

Integrity: a delta carries the SHA-256 of its payload and two digests of a version's served state
(every served value, bitwise, and its ``trainer.json``): its parent's and its own. Applying one checks
the parent's digest before and its own after, so a chain applies only onto the base it was made from,
and gives bit for bit the values the trainer exported; otherwise :class:`DeltaError` says which link
failed and why (missing, checksum, shape, digest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.cli import positive_int
from trainer.errors import ModelDirError, TrainerError

if TYPE_CHECKING:
    from trainer.state import TrainerState

log = logging.getLogger("trainer")

COMMAND = "materialize"
DELTA_DIR = "delta"
MANIFEST = "delta.json"
PAYLOAD = "delta.npz"
DELTA_FORMAT = 1
CHANGES = "changes"  # the payload's member holding the trainer.json and vocabulary changes (JSON)
# Lists of a vocabulary field's JSON that are not one value per admitted ID (those are diffed by ID).
NOT_PER_ID = frozenset({"free", "pending", "counters"})
FULL, DELTA = "full", "delta"


class DeltaError(TrainerError):
    """A delta that does not apply: a missing link, a bad checksum, a shape or digest mismatch."""


class NeedsFull(Exception):
    """The state can no longer be expressed as a delta of the previous version (its variables or
    feature layout changed shape): the next version is a full export."""


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _json_roundtrip(obj: Any) -> Any:
    """``obj`` as ``trainer.json`` gives it back (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(obj))


def _rows(a: np.ndarray) -> np.ndarray:
    """``a``'s bytes, one row per entry of its first axis (one row for a scalar): a bitwise view."""
    flat = np.ascontiguousarray(a).reshape(a.shape[0] if a.ndim else 1, -1)
    return flat.view(np.uint8)


def changed_rows(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Which rows (entries of the first axis) differ bitwise (so NaN and -0.0 count as values)."""
    return np.any(_rows(old) != _rows(new), axis=1)


@dataclass
class Params:
    """What a version serves: its served variables' values by path, and its ``trainer.json`` without
    ``served`` (which the export derives from the values)."""

    values: dict[str, np.ndarray]
    meta: dict[str, Any]
    _digests: dict[str, str] = field(default_factory=dict)  # per path, of values[path]
    _meta_digest: str | None = None  # of meta (never changed in place: applying a delta makes a new one)

    def variable_digest(self, path: str) -> str:
        digest = self._digests.get(path)
        if digest is None:
            digest = self._digests[path] = hashlib.sha256(np.ascontiguousarray(self.values[path]).data).hexdigest()
        return digest

    def digest(self) -> str:
        h = hashlib.sha256()
        for path in sorted(self.values):
            a = self.values[path]
            h.update(f"{path}\0{a.dtype.str}\0{list(a.shape)}\0{self.variable_digest(path)}\n".encode())
        if self._meta_digest is None:
            self._meta_digest = hashlib.sha256(_canonical(self.meta)).hexdigest()
        h.update(b"meta\0" + self._meta_digest.encode())
        return h.hexdigest()

    def shapes(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {p: (a.dtype.str, a.shape) for p, a in self.values.items()}


def capture(state: TrainerState, paths: Iterable[str]) -> Params:
    """A copy of what ``state`` would export now: the variables ``paths`` and its ``trainer.json``."""
    from trainer.export import export_meta, variable_key

    variables = {variable_key(v.path): v for v in state.model.variables}
    values = {}
    for path in paths:
        if path not in variables:
            raise NeedsFull(f"the model no longer has the variable {path}")
        values[path] = np.array(variables[path].numpy(), copy=True)
    return Params(values, _json_roundtrip(export_meta(state)))


def export_params(directory: Path, model: Any) -> Params:
    """What the export in ``directory`` serves, read back with ``model`` (any model of its layout)."""
    from trainer.export import exported_values, read_export_meta

    try:
        meta = read_export_meta(directory)
        if meta is None or "vocab" not in meta:
            raise DeltaError(f"{directory} is not an export of this trainer (no trainer.json with a vocabulary)")
        values = exported_values(directory, model)
    except ModelDirError as exc:
        raise DeltaError(str(exc)) from exc
    return Params(values, {k: v for k, v in meta.items() if k != "served"})


# -- one delta: made, written, read, applied ----------------------------------------------------------


@dataclass
class Delta:
    """A delta's manifest (``delta.json``) and its payload's arrays (``delta.npz``)."""

    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]
    changes: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])


def make_delta(parent: Params, child: Params, version: int, parent_version: int, base: int,
               chain: list[int]) -> Delta:
    """The delta that turns ``parent`` into ``child``; NeedsFull when a variable changed shape."""
    if parent.shapes() != child.shapes():
        raise NeedsFull("the served variables changed (a field's capacity or the model's layout)")
    if parent.meta.get("spec") != child.meta.get("spec"):
        raise NeedsFull("the feature layout changed")
    variables: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for path in sorted(child.values):
        old, new = parent.values[path], child.values[path]
        changed = changed_rows(old, new)
        count = int(changed.sum())
        if count == 0:
            child._digests.setdefault(path, parent.variable_digest(path))
            continue
        name = f"v{len(variables)}"
        entry: dict[str, Any] = {"path": path, "name": name, "dtype": new.dtype.str, "shape": list(new.shape)}
        row_bytes = new.nbytes // max(1, new.shape[0]) if new.ndim else new.nbytes
        if new.ndim and count * (row_bytes + 4) < new.nbytes:
            rows = np.flatnonzero(changed).astype(np.int32 if new.shape[0] < 2**31 else np.int64)
            arrays[f"{name}.rows"] = rows
            arrays[f"{name}.values"] = new[rows]
            entry["rows"] = count
        else:
            arrays[f"{name}.values"] = new
            entry["rows"] = None  # the whole variable
        variables.append(entry)
    meta_set = {k: v for k, v in child.meta.items() if k != "vocab" and (k not in parent.meta or parent.meta[k] != v)}
    changes = {
        "meta": {"set": meta_set, "drop": [k for k in parent.meta if k not in child.meta]},
        "vocab": vocab_delta(parent.meta.get("vocab") or {}, child.meta.get("vocab") or {}),
    }
    manifest = {
        "format": DELTA_FORMAT,
        "version": version,
        "parent": parent_version,
        "base": base,
        "chain": chain,
        "step": child.meta.get("step"),
        "parent_digest": parent.digest(),
        "digest": child.digest(),
        "variables": variables,
        "vocab": {name: _vocab_counts(change) for name, change in changes["vocab"]["fields"].items()},
    }
    return Delta(manifest, arrays, changes)


def write_delta(directory: Path, delta: Delta) -> int:
    """``delta`` into ``directory`` (created); returns the bytes written."""
    directory.mkdir(parents=True, exist_ok=False)
    payload = directory / PAYLOAD
    with open(payload, "wb") as out:
        arrays: dict[str, Any] = {**delta.arrays, CHANGES: np.frombuffer(_canonical(delta.changes), np.uint8)}
        np.savez_compressed(out, **arrays)
        out.flush()
        os.fsync(out.fileno())
    data = payload.read_bytes()
    manifest = {**delta.manifest, "payload": {"file": PAYLOAD, "sha256": hashlib.sha256(data).hexdigest(),
                                              "bytes": len(data)}}
    text = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")
    (directory / MANIFEST).write_bytes(text)
    delta.manifest = manifest
    return len(data) + len(text)


def read_manifest(version_dir: Path) -> dict[str, Any] | None:
    """The manifest of the delta in ``version_dir``; None when the version is not a delta (no
    ``delta/``). An unreadable one raises DeltaError."""
    path = version_dir / DELTA_DIR / MANIFEST
    if not (version_dir / DELTA_DIR).is_dir():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeltaError(f"cannot read the delta manifest {path}: {' '.join(str(exc).split())}") from exc
    keys = ("format", "version", "parent", "base", "chain", "parent_digest", "digest", "variables", "payload")
    if not isinstance(manifest, dict) or any(k not in manifest for k in keys):
        raise DeltaError(f"{path} is not a delta manifest (expected an object with {', '.join(keys)})")
    if manifest["format"] != DELTA_FORMAT:
        raise DeltaError(f"{path} has delta format {manifest['format']!r}, expected {DELTA_FORMAT}")
    return manifest


def read_delta(version_dir: Path, version: int, load: bool = True) -> Delta:
    """The delta of ``version`` in ``version_dir``, its payload's checksum verified (its arrays and
    changes read too unless ``load`` is false: a check of the link only)."""
    manifest = read_manifest(version_dir)
    if manifest is None:
        raise DeltaError(f"version {version} has no delta in {version_dir} (missing link)")
    if manifest["version"] != version:
        raise DeltaError(f"{version_dir / DELTA_DIR / MANIFEST} is the delta of version {manifest['version']}, "
                         f"expected {version}")
    payload = version_dir / DELTA_DIR / str(manifest["payload"]["file"])
    try:
        data = payload.read_bytes()
    except OSError as exc:
        raise DeltaError(f"cannot read {payload} (missing link): {exc.strerror or exc}") from exc
    if hashlib.sha256(data).hexdigest() != manifest["payload"]["sha256"]:
        raise DeltaError(f"{payload} fails its checksum (sha256 {hashlib.sha256(data).hexdigest()[:12]}..., "
                         f"expected {str(manifest['payload']['sha256'])[:12]}...)")
    if not load:
        return Delta(manifest, {}, {})
    import io

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        changes = json.loads(arrays.pop(CHANGES).tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise DeltaError(f"cannot read {payload}: {' '.join(str(exc).split())}") from exc
    return Delta(manifest, arrays, changes)


def apply_delta(parent: Params, delta: Delta) -> Params:
    """``parent`` with ``delta`` applied (``parent`` is left as it was); DeltaError when ``parent`` is
    not the version the delta was made from, a variable's shape differs, or the result is not the
    version the delta says it makes."""
    m, version = delta.manifest, delta.version
    if parent.digest() != m["parent_digest"]:
        raise DeltaError(f"version {version} applies onto version {m['parent']} as it was exported, and what it "
                         "is applied onto differs (digest mismatch)")
    values = dict(parent.values)
    digests = dict(parent._digests)
    for entry in m["variables"]:
        path, name = entry["path"], entry["name"]
        old = values.get(path)
        if old is None:
            raise DeltaError(f"version {version} changes {path}, which version {m['parent']} does not serve")
        if list(old.shape) != entry["shape"] or old.dtype.str != entry["dtype"]:
            raise DeltaError(f"version {version} changes {path} as {entry['dtype']} {entry['shape']}, and version "
                             f"{m['parent']} holds it as {old.dtype.str} {list(old.shape)} (shape mismatch)")
        new = delta.arrays.get(f"{name}.values")
        rows = delta.arrays.get(f"{name}.rows")
        expected = old.shape if entry["rows"] is None else (entry["rows"], *old.shape[1:])
        if new is None or new.shape != expected or new.dtype != old.dtype or (entry["rows"] is not None and (
                rows is None or rows.shape != (entry["rows"],) or (len(rows) and (rows.min() < 0 or
                                                                                  rows.max() >= old.shape[0])))):
            got = None if new is None else f"{new.dtype.str} {list(new.shape)}"
            raise DeltaError(f"version {version}'s payload holds {path} as {got}, expected {old.dtype.str} "
                             f"{list(expected)} with rows inside {old.shape[0] if old.ndim else 1} (shape mismatch)")
        if rows is not None:
            updated = old.copy()
            updated[rows] = new
            new = updated
        values[path] = new
        digests.pop(path, None)
    meta = {k: v for k, v in parent.meta.items() if k not in delta.changes["meta"]["drop"]}
    meta.update(delta.changes["meta"]["set"])
    meta["vocab"] = apply_vocab_delta(parent.meta.get("vocab") or {}, delta.changes["vocab"])
    child = Params(values, meta, digests)
    if child.digest() != m["digest"]:
        raise DeltaError(f"version {version} applied onto version {m['parent']} does not give the version it was "
                         "made from (digest mismatch)")
    return child


# -- vocabulary changes -------------------------------------------------------------------------------


def vocab_delta(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The change from one ``VocabSet.to_json()`` to another: per field, the IDs whose entries changed
    (admitted, or their statistics moved), the IDs evicted, the pending IDs that changed or left, and
    any other entry that changed. A field whose change cannot be expressed so (and checked to give
    ``new`` back exactly) is carried whole."""
    fields: dict[str, Any] = {}
    old_fields = old.get("fields") or {}
    for name, after in (new.get("fields") or {}).items():
        before = old_fields.get(name)
        change = _field_delta(before, after) if before is not None else None
        if change is None or _apply_field(before, change) != after:
            change = {"full": after}
        if change.get("full") is not None or any(change[k] for k in ("set", "drop", "other")) or \
                any(change["pending"].values()):
            fields[name] = change
    return {
        "top": {k: v for k, v in new.items() if k != "fields" and old.get(k) != v},
        "fields": fields,
        "removed": [name for name in old_fields if name not in (new.get("fields") or {})],
    }


def apply_vocab_delta(old: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = {**old, **change["top"]}
    fields = {k: v for k, v in (old.get("fields") or {}).items() if k not in change["removed"]}
    for name, field_change in change["fields"].items():
        fields[name] = _apply_field(fields.get(name), field_change)
    out["fields"] = fields
    return out


def _per_id_columns(data: dict[str, Any]) -> list[str]:
    keys = data.get("keys")
    if not isinstance(keys, list):
        return []
    return [k for k, v in data.items() if k not in NOT_PER_ID and k != "keys" and isinstance(v, list)
            and len(v) == len(keys)]


def _field_delta(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    columns = _per_id_columns(new)
    if "keys" not in new or columns != _per_id_columns(old) or any(k not in new for k in old):
        return None
    before = {key: tuple(old[c][i] for c in columns) for i, key in enumerate(old["keys"])}
    after = {key: tuple(new[c][i] for c in columns) for i, key in enumerate(new["keys"])}
    pending: dict[str, list[Any]] = {"set": [], "drop": [], "append": []}
    if isinstance(new.get("pending"), list) and isinstance(old.get("pending"), list):
        # [key, ...] entries in insertion order: those kept stay in order (updated in place), new ones
        # and those that left and came back are appended; so the new list is the old one's kept entries,
        # then a tail from the first entry that is not an old one in order.
        position = {entry[0]: i for i, entry in enumerate(old["pending"])}
        last, split = -1, len(new["pending"])
        for i, entry in enumerate(new["pending"]):
            at = position.get(entry[0])
            if at is None or at <= last:
                split = i
                break
            last = at
        head, was = new["pending"][:split], {entry[0]: entry for entry in old["pending"]}
        kept = {entry[0] for entry in head}
        pending = {"set": [e for e in head if was[e[0]] != e], "drop": [k for k in was if k not in kept],
                   "append": new["pending"][split:]}
    slot = columns.index("slots") if "slots" in columns else None
    return {
        "columns": columns,
        "set": [[key, *values] for key, values in after.items() if before.get(key) != values],
        "drop": [[key, before[key][slot] if slot is not None else None] for key in before if key not in after],
        "pending": pending,
        "other": {k: v for k, v in new.items() if k not in columns and k not in ("keys", "pending")
                  and (k not in old or old[k] != v)},
        "admitted": sum(1 for key in after if key not in before),
    }


def _apply_field(old: dict[str, Any] | None, change: dict[str, Any]) -> dict[str, Any]:
    if "full" in change:
        return change["full"]
    assert old is not None
    columns = change["columns"]
    rows = {key: list(values) for key, *values in zip(old["keys"], *(old[c] for c in columns), strict=True)}
    for key, _slot in change["drop"]:
        del rows[key]
    for key, *values in change["set"]:
        rows[key] = values
    ordered = list(rows.items())
    if "slots" in columns:  # to_json lists the admitted IDs in slot order
        at = columns.index("slots")
        ordered.sort(key=lambda item: item[1][at])
    out = {**old, **change["other"], "keys": [key for key, _ in ordered]}
    for i, column in enumerate(columns):
        out[column] = [values[i] for _, values in ordered]
    if "pending" in old:
        dropped = set(change["pending"]["drop"])
        updated = {entry[0]: entry for entry in change["pending"]["set"]}
        kept = [updated.get(e[0], e) for e in old["pending"] if e[0] not in dropped]
        out["pending"] = kept + change["pending"]["append"]
    return out


def _vocab_counts(change: dict[str, Any]) -> dict[str, Any]:
    """A field's change in brief, for the manifest: IDs admitted, evicted, whose statistics changed."""
    if "full" in change:
        return {"whole": True}
    return {"admitted": change["admitted"], "evicted": len(change["drop"]), "ids_changed": len(change["set"]),
            "pending_changed": len(change["pending"]["set"]) + len(change["pending"]["append"]),
            "pending_dropped": len(change["pending"]["drop"])}


# -- chains --------------------------------------------------------------------------------------------


def chain_links(model_dir: Path, version: int, load: bool = True) -> tuple[int, list[Delta]]:
    """The base of ``version``'s chain and its deltas in order, every link checked: on disk, its
    checksum, and naming the same base and the link before it (``load``: their payloads read too)."""
    from trainer.export import is_export

    manifest = read_manifest(model_dir / str(version))
    if manifest is None:
        raise DeltaError(f"version {version} is not a delta (no {DELTA_DIR}/ in {model_dir / str(version)})")
    base, chain = int(manifest["base"]), [int(v) for v in manifest["chain"]]
    if not chain or chain[-1] != version:
        raise DeltaError(f"version {version}'s chain {chain} does not end with it")
    if not is_export(model_dir / str(base)):
        raise DeltaError(f"version {version}'s chain starts at the full export {base}, which is not on disk "
                         f"(missing link: no SavedModel in {model_dir / str(base)})")
    links: list[Delta] = []
    parent = base
    for number in chain:
        if not (model_dir / str(number)).is_dir():
            raise DeltaError(f"version {version}'s chain needs version {number}, which is not on disk (missing link)")
        link = read_delta(model_dir / str(number), number, load)
        m = link.manifest
        if int(m["base"]) != base or int(m["parent"]) != parent or [int(v) for v in m["chain"]] != \
                chain[: len(links) + 1]:
            raise DeltaError(f"version {number} is not the link version {version}'s chain needs (its base "
                             f"{m['base']}, parent {m['parent']}; expected {base}, {parent})")
        links.append(link)
        parent = number
    return base, links


def materialize(model_dir: str | os.PathLike[str], version: int, out: str | os.PathLike[str] | None = None) -> Path:
    """The path of a full SavedModel of ``version``: a full export as it is; a delta's chain applied
    onto its base, written to ``out`` (default: the version's own directory, beside its delta, unless
    a SavedModel is there already). DeltaError when a link does not apply."""
    from trainer.export import is_export

    model_dir = Path(model_dir)
    directory = model_dir / str(version)
    if not directory.is_dir():
        raise ModelDirError(f"version {version} is not in {model_dir} (no directory {directory})")
    manifest = read_manifest(directory)
    if manifest is None:
        if not is_export(directory):
            raise ModelDirError(f"{directory} holds neither a SavedModel nor a delta")
        if out is None:
            return directory
        return _copy_export(directory, Path(out))
    if out is None and is_export(directory):
        return directory
    base, links = chain_links(model_dir, version)
    state, params = _base_state(model_dir / str(base))
    for link in links:
        params = apply_delta(params, link)
    target = directory if out is None else Path(out)
    keep = directory if out is None else None
    _write_full(state, params, target, keep)
    log.info("materialized version %d: %d deltas onto the full export %d -> %s", version, len(links), base, target)
    return target


def _base_state(directory: Path) -> tuple[TrainerState, Params]:
    """A state laid out as the export in ``directory`` (its own config), and what that export serves."""
    from trainer.config import TrainerConfig
    from trainer.export import read_export_meta
    from trainer.features import FeatureSpec
    from trainer.state import TrainerState
    from trainer.vocab import VocabSet

    meta = read_export_meta(directory)
    if meta is None or "vocab" not in meta:
        raise DeltaError(f"the base {directory} is not an export of this trainer (no trainer.json with a vocabulary)")
    state = TrainerState(TrainerConfig.from_json(meta["config"]), FeatureSpec.from_json(meta["spec"]),
                         VocabSet.from_json(meta["vocab"]))
    return state, export_params(directory, state.model)


def _write_full(state: TrainerState, params: Params, target: Path, keep: Path | None) -> None:
    """``params`` into ``state`` and out as the full SavedModel ``target``, atomically; ``keep``: the
    version directory whose delta and record stay beside the SavedModel."""
    from trainer.export import export_state, variable_key
    from trainer.vocab import VocabSet

    variables = {variable_key(v.path): v for v in state.model.variables}
    for path, value in params.values.items():
        variables[path].assign(value)
    state.vocabs.vocabs = VocabSet.from_json(params.meta["vocab"]).vocabs

    def beside(tmp: Path) -> None:
        if keep is None:
            return
        shutil.copytree(keep / DELTA_DIR, tmp / DELTA_DIR)
        for extra in (keep / "assets.extra").glob("*") if (keep / "assets.extra").is_dir() else ():
            if not (tmp / "assets.extra" / extra.name).exists():
                shutil.copy2(extra, tmp / "assets.extra" / extra.name)

    export_state(state, target, meta=params.meta, extra=beside)


def _copy_export(directory: Path, out: Path) -> Path:
    from trainer.export import replace_directory

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(directory, tmp)
        replace_directory(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def needed_by(version_dir: Path) -> list[int]:
    """The versions a delta version's chain needs (its base and the links before it); none for a full
    export, or for a delta whose manifest cannot be read (retention then keeps what it keeps anyway)."""
    try:
        manifest = read_manifest(version_dir)
    except DeltaError:
        return []
    if manifest is None:
        return []
    return [int(manifest["base"]), *(int(v) for v in manifest["chain"][:-1])]


def directory_bytes(directory: Path, skip: str | None = None) -> int:
    """Bytes of the files under ``directory`` (those under its subdirectory ``skip`` left out)."""
    total = 0
    for root, dirs, files in os.walk(directory):
        if skip is not None and Path(root) == directory and skip in dirs:
            dirs.remove(skip)
        total += sum((Path(root) / name).stat().st_size for name in files)
    return total


# -- the sidecar's side: which versions are deltas -----------------------------------------------------


@dataclass
class Written:
    """A version written by :class:`DeltaExports`: what its record says of it, and ``refused``, why a
    delta did not apply (the version is then refused)."""

    path: Path
    kind: str
    full_bytes: int | None
    delta_bytes: int | None = None
    base: int | None = None
    chain: list[int] = field(default_factory=list)
    refused: str | None = None
    delta_seconds: float | None = None  # making, writing and proving the delta (the full export's time apart)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"export": self.kind, "bytes": {}}
        if self.full_bytes is not None:
            out["bytes"]["full"] = self.full_bytes
        if self.kind == DELTA:
            out.update(base=self.base, chain=self.chain)
            out["bytes"]["delta"] = self.delta_bytes
        return out


class DeltaExports:
    """Writes each version as a full export or as a delta of the previous one: a full export first, then
    up to ``full_every`` deltas, then a full export again; a full one also after a start, after a delta
    that did not apply, after a warm start replaced the state, and when the served variables change
    shape. A delta version gets its full SavedModel too (served and rolled back to as any version);
    its delta is what a serving site receives (:func:`materialize`).

    Before a delta becomes a version it is proven to apply: the chain's links are checked on disk
    (present, checksums) and the delta is read back and applied onto the previous version's values
    (read from the base's SavedModel at the chain's first delta), which must give, bit for bit, what
    the trainer exports now (the digests)."""

    def __init__(self, model_dir: Path, enabled: bool, full_every: int):
        self.model_dir = model_dir
        self.enabled = enabled
        self.full_every = full_every
        self.base: int | None = None
        self.chain: list[int] = []
        self.parent: Params | None = None  # the last version's served values; None: read the base's
        self._state: weakref.ReferenceType[TrainerState] | None = None
        self._layout: list[tuple[str, tuple[int, ...]]] = []  # the model's variables at the chain's start

    def reset(self) -> None:
        """The next version is a full export."""
        self.base, self.chain, self.parent, self._state, self._layout = None, [], None, None, []

    def _delta_due(self, state: TrainerState) -> bool:
        return (self.enabled and self.base is not None and len(self.chain) < self.full_every
                and self._state is not None and self._state() is state)

    def export(self, state: TrainerState, version: int,
               export_full: Callable[[TrainerState, int, Callable[[Path], None] | None], Path]) -> Written:
        """Write ``version`` (``export_full(state, version, extra)`` writes a full export, ``extra``
        adding files to it before it appears)."""
        if self._delta_due(state):
            tmp = self.model_dir / f".{version}.delta.tmp-{os.getpid()}"  # the delta in tmp/delta/ until placed
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                return self._export_delta(state, version, export_full, tmp)
            except NeedsFull as exc:
                log.info("version %d is a full export: %s", version, exc)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        path = export_full(state, version, None)
        self.reset()
        if self.enabled:
            self.base, self._state, self._layout = version, weakref.ref(state), _layout(state)
        return Written(path, FULL, directory_bytes(path))

    def _export_delta(self, state: TrainerState, version: int,
                      export_full: Callable[[TrainerState, int, Callable[[Path], None] | None], Path],
                      tmp: Path) -> Written:
        assert self.base is not None
        if _layout(state) != self._layout:
            raise NeedsFull("the model's variables changed (a field's capacity grew, or the model was rebuilt)")
        chain = [*self.chain, version]
        parent_version = self.chain[-1] if self.chain else self.base
        started = time.monotonic()
        try:
            if self.parent is None:
                self.parent = export_params(self.model_dir / str(self.base), state.model)
            child = capture(state, self.parent.values)
            delta = make_delta(self.parent, child, version, parent_version, self.base, chain)
            delta_bytes = write_delta(tmp / DELTA_DIR, delta)
            if self.chain:
                chain_links(self.model_dir, parent_version, load=False)
            else:
                _check_base(self.model_dir, self.base)
            apply_delta(self.parent, read_delta(tmp, version))
        except DeltaError as exc:
            base = self.base
            self.reset()
            path = self.model_dir / str(version)
            path.mkdir(parents=True, exist_ok=True)
            if (tmp / DELTA_DIR).is_dir():
                os.rename(tmp / DELTA_DIR, path / DELTA_DIR)
            delta_bytes = directory_bytes(path / DELTA_DIR) if (path / DELTA_DIR).is_dir() else 0
            return Written(path, DELTA, None, delta_bytes, base, chain, refused=str(exc))

        def beside(directory: Path) -> None:
            os.rename(tmp / DELTA_DIR, directory / DELTA_DIR)

        seconds = time.monotonic() - started
        path = export_full(state, version, beside)
        self.parent, self.chain = child, chain
        return Written(path, DELTA, directory_bytes(path, skip=DELTA_DIR), delta_bytes, self.base, chain,
                       delta_seconds=seconds)


def _layout(state: TrainerState) -> list[tuple[str, tuple[int, ...]]]:
    return [(v.path, tuple(v.shape)) for v in state.model.variables]


def _check_base(model_dir: Path, base: int) -> None:
    from trainer.export import is_export

    if not is_export(model_dir / str(base)):
        raise DeltaError(f"the chain's full export {base} is not on disk (missing link: no SavedModel in "
                         f"{model_dir / str(base)})")


# -- the command line ----------------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """``materialize`` under the trainer's subcommands."""
    p = sub.add_parser(
        COMMAND,
        help="write a delta version as a full SavedModel (its chain applied onto its base)",
        description="Write a model version as a full SavedModel: a delta version's chain of deltas applied onto "
        "its full export, checked link by link (present, checksum, shapes, digests). A full export is given as "
        "it is. Prints the SavedModel's path.",
    )
    p.add_argument("--model-dir", required=True, metavar="DIR", help="the directory of numbered versions")
    # --model-version, as `trainer embeddings` names it: --version prints the program's version
    p.add_argument("--model-version", required=True, type=positive_int, metavar="VERSION",
                   help="the version to materialize")
    p.add_argument(
        "--out", metavar="DIR",
        help="write the SavedModel here (atomically) (default: the version's own directory, beside its delta)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only on stderr")


def run(args: argparse.Namespace) -> int:
    """Materialize; 0, or a ModelDirError (exit 2) / DeltaError (exit 1) for the CLI to print."""
    model_dir, version = Path(args.model_dir), args.model_version
    manifest = read_manifest(model_dir / str(version)) if (model_dir / str(version)).is_dir() else None
    path = materialize(model_dir, version, args.out)
    if args.json:
        chain = {} if manifest is None else {"base": manifest["base"], "chain": manifest["chain"]}
        print(json.dumps({"version": version, "path": str(path), "export": DELTA if manifest else FULL, **chain},
                         sort_keys=True))
    else:
        print(path)
    return 0
