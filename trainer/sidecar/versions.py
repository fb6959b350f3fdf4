"""Model versions on disk: ``<model-dir>/<version>/`` in TF Serving's layout, written atomically.

An export goes to a temporary sibling and is renamed into place (:func:`trainer.export.export_state`),
so a reader never sees half a version. The last ``keep`` versions stay on disk, plus any the
registry still needs (the current one and the last published ones a rollback can return to).
A failed export (no space, no permission) raises :class:`ExportFailed` and leaves no directory.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.sidecar.errors import ExportFailed

if TYPE_CHECKING:
    from trainer.state import TrainerState

log = logging.getLogger("trainer.sidecar")


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

    def export(self, state: TrainerState, version: int) -> Path:
        import tensorflow as tf

        from trainer.export import export_state

        target = self.path(version)
        try:
            return export_state(state, target)
        except (OSError, tf.errors.OpError) as exc:
            shutil.rmtree(target, ignore_errors=True)
            reason = getattr(exc, "strerror", None) or getattr(exc, "message", None) or str(exc)
            raise ExportFailed(f"cannot export version {version} to {target}: {' '.join(str(reason).split())}") from exc

    def remove_orphans(self, registered: Iterable[int]) -> list[int]:
        """Drop version directories the registry never heard of (an export cut short by a crash)."""
        known = set(registered)
        orphans = [v for v in self.on_disk() if v not in known]
        for v in orphans:
            shutil.rmtree(self.path(v), ignore_errors=True)
        for tmp in self.model_dir.glob(".*.tmp-*") if self.model_dir.is_dir() else []:
            shutil.rmtree(tmp, ignore_errors=True)
        return orphans

    def prune(self, protected: Iterable[int]) -> list[int]:
        """Keep the newest ``keep`` versions and the ``protected`` ones; remove the rest."""
        versions = self.on_disk()
        keep = set(versions[-self.keep :]) | set(protected)
        removed = [v for v in versions if v not in keep]
        for v in removed:
            shutil.rmtree(self.path(v), ignore_errors=True)
        if removed:
            log.info("removed old versions", extra={"versions": removed})
        return removed
