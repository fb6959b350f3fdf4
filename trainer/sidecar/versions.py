"""Model versions on disk: ``<model-dir>/<version>/`` in TF Serving's layout, written atomically.

Disk is the source of truth; the Redis registry is an index of it (:mod:`trainer.sidecar.registry`).
Each version directory carries its own record, ``<version>/assets.extra/odl-version.json`` (TF Serving
and the SavedModel loader ignore ``assets.extra``), and ``<model-dir>/current.json`` holds the current
pointer; both are written atomically, before the registry, on every change. So a flushed or replaced
Redis is rebuilt from disk, and nothing is ever deleted because the registry lacks it: the only
deletion is the retention rule of :meth:`VersionStore.prune`, which never deletes a version the chain
of a kept delta version needs (:mod:`trainer.delta`: ``<version>/delta/`` beside the SavedModel).

An export goes to a temporary sibling and is renamed into place (:func:`trainer.export.export_state`),
so a reader never sees half a version. A failed export (no space, no permission) raises
:class:`ExportFailed` and leaves no directory.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.output import write_atomic
from trainer.delta import DeltaExports, Written, directory_bytes, needed_by
from trainer.sidecar.errors import ExportFailed, RegistryError

if TYPE_CHECKING:
    from trainer.state import TrainerState

log = logging.getLogger("trainer.sidecar")

RECORD_PATH = Path("assets.extra") / "odl-version.json"
CURRENT_FILE = "current.json"


class VersionStore:
    def __init__(self, model_dir: Path, keep: int):
        self.model_dir = model_dir
        self.keep = keep

    def on_disk(self) -> list[int]:
        if not self.model_dir.is_dir():
            return []
        return sorted(int(p.name) for p in self.model_dir.iterdir() if p.name.isdigit() and p.is_dir())

    def path(self, version: int) -> Path:
        return self.model_dir / str(version)

    def next_version(self, registered: Iterable[int]) -> int:
        return max([0, *self.on_disk(), *registered]) + 1

    def export(self, state: TrainerState, version: int, deltas: DeltaExports | None = None) -> Written:
        """Write ``version``: a full export, or with ``deltas`` a delta of the previous version when one
        is due (beside its full SavedModel). ExportFailed when the disk refuses."""
        import tensorflow as tf

        from trainer.export import export_state

        def full(state: TrainerState, number: int, extra: Callable[[Path], None] | None) -> Path:
            return export_state(state, self.path(number), extra=extra)

        target = self.path(version)
        try:
            if deltas is not None:
                return deltas.export(state, version, full)
            return Written(full(state, version, None), "full", directory_bytes(target))
        except (OSError, tf.errors.OpError) as exc:
            shutil.rmtree(target, ignore_errors=True)
            reason = getattr(exc, "strerror", None) or getattr(exc, "message", None) or str(exc)
            raise ExportFailed(f"cannot export version {version} to {target}: {' '.join(str(reason).split())}") from exc

    # -- the records -------------------------------------------------------------------------------

    def write_record(self, record: dict[str, Any]) -> None:
        """The version's record into its directory (atomically); the directory must exist."""
        directory = self.path(int(record["version"]))
        if not directory.is_dir():
            raise RegistryError(f"version {record['version']} has no directory {directory}: nothing to record")
        write_atomic(directory / RECORD_PATH, json.dumps(record, sort_keys=True))

    def read_record(self, version: int) -> dict[str, Any] | None:
        """The record in the version's directory; None when there is none (an export cut short before
        it was judged). An unreadable one raises :class:`RegistryError` saying why."""
        path = self.path(version) / RECORD_PATH
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read the record {path}: {exc}") from exc
        valid = isinstance(record, dict) and record.get("version") == version and isinstance(record.get("status"), str)
        if not valid:
            raise RegistryError(
                f"{path} is not the record of version {version} (expected an object with that version and a status)"
            )
        return record

    def write_current(self, version: int) -> None:
        write_atomic(self.model_dir / CURRENT_FILE, json.dumps({"current": version}))

    def read_current(self) -> int | None:
        """The current pointer kept on disk; None when nothing was ever published here."""
        path = self.model_dir / CURRENT_FILE
        try:
            return int(json.loads(path.read_text(encoding="utf-8"))["current"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"cannot read the current pointer {path}: {exc} (expected {{\"current\": N}})") from exc

    # -- clean-up ----------------------------------------------------------------------------------

    def remove_temporary(self) -> list[str]:
        """Remove the directories interrupted exports left (``.<version>.tmp-<pid>``): they are not
        versions. Only the sidecar calls it, at start, when no export of its own can be under way."""
        found = sorted(p for p in self.model_dir.glob(".*.tmp-*") if p.is_dir()) if self.model_dir.is_dir() else []
        for tmp in found:
            shutil.rmtree(tmp, ignore_errors=True)
        return [tmp.name for tmp in found]

    def prune(self, protected: Iterable[int]) -> list[int]:
        """The retention rule, the only deletion: keep the newest ``keep`` versions and the
        ``protected`` ones (the current and the last good version), and every version the chain of a
        kept delta needs (its base and the deltas before it); remove the rest."""
        versions = self.on_disk()
        keep = set(versions[-self.keep :]) | set(protected)
        keep |= {needed for v in list(keep) for needed in needed_by(self.path(v))}
        removed = [v for v in versions if v not in keep]
        for v in removed:
            shutil.rmtree(self.path(v), ignore_errors=True)
        if removed:
            log.info("removed old versions", extra={"versions": removed})
        return removed
