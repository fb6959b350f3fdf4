"""Output files that appear only when complete: write to a temporary name beside, then rename."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO


class AtomicFile:
    """A binary file written under ``.<name>.tmp-<pid>`` and renamed to ``path`` on :meth:`commit`.

    :meth:`discard` (or leaving a ``with`` block by an exception) removes the temporary file, so a
    failed or interrupted run never leaves a half-written output under the final name.
    """

    def __init__(self, path: str | os.PathLike[str], buffering: int = 1 << 20) -> None:
        self.path = Path(path)
        self.tmp_path = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(self.tmp_path, "wb", buffering=buffering)  # noqa: SIM115
        self.committed = False

    @property
    def file(self) -> BinaryIO:
        if self._file is None:
            raise ValueError(f"{self.path} is already closed")
        return self._file

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> None:
        f = self.file
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._file = None
        os.replace(self.tmp_path, self.path)
        self.committed = True

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if not self.committed:
            with contextlib.suppress(FileNotFoundError):
                self.tmp_path.unlink()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or not self.committed:
            self.discard()


def commit_all(files: list[AtomicFile]) -> None:
    """Commit several outputs; they are renamed one after another once all were flushed."""
    for f in files:
        f.file.flush()
    for f in files:
        f.commit()


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write a whole small file (a report, a JSON result) so that it appears only when complete."""
    with AtomicFile(path) as out:
        out.write(data.encode() if isinstance(data, str) else data)
        out.commit()
