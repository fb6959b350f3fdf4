"""Atomic output files: the final name appears only on commit, complete; a failure leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.output import AtomicFile, commit_all, write_atomic


def test_the_file_appears_under_its_name_only_when_committed(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.jsonl"
    with AtomicFile(path) as out:
        out.write(b"one\n")
        assert not path.exists() and out.tmp_path.exists()
        out.commit()
    assert path.read_bytes() == b"one\n" and not out.tmp_path.exists()


def test_an_exception_or_a_missing_commit_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), AtomicFile(tmp_path / "failed.jsonl") as out:
        out.write(b"half")
        raise RuntimeError("interrupted")
    with AtomicFile(tmp_path / "uncommitted.jsonl") as out:
        out.write(b"half")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="already closed"):
        out.write(b"late")


def test_commit_all_renames_every_output(tmp_path: Path) -> None:
    files = [AtomicFile(tmp_path / f"{name}.jsonl") for name in ("samples", "unmatched")]
    for f in files:
        f.write(f.path.stem.encode())
    commit_all(files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.jsonl", "unmatched.jsonl"]
    assert (tmp_path / "unmatched.jsonl").read_bytes() == b"unmatched"


def test_write_atomic_replaces_the_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    write_atomic(target, "first, and longer")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]
