"""Fixtures of the trainer tests: small synthetic sample files and one model fitted on them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

from synth import make_samples, oracle_samples, write_jsonl

SMALL = {"impressions": 1500, "users": 60, "items": 30}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trainer-data")


@pytest.fixture(scope="session")
def train_file(data_dir: Path) -> Path:
    samples, _ = make_samples(seed=1, **SMALL)
    return write_jsonl(data_dir / "train.jsonl", samples)


@pytest.fixture(scope="session")
def test_file(data_dir: Path) -> Path:
    samples, truth = make_samples(seed=2, **SMALL)
    return write_jsonl(data_dir / "test.jsonl", oracle_samples(samples, truth))


@pytest.fixture(scope="session")
def fast_args() -> list[str]:
    return ["--epochs", "1", "--batch-size", "128", "--quiet"]


@pytest.fixture(scope="session")
def exported(data_dir: Path, train_file: Path, fast_args: list[str]) -> Path:
    """A pu model fitted on ``train_file`` through the CLI, with a checkpoint beside it."""
    from trainer.__main__ import main

    export = data_dir / "model-pu"
    assert (
        main(
            [
                "fit",
                "--samples",
                str(train_file),
                "--loss",
                "pu",
                "--export",
                str(export),
                "--seed",
                "3",
                "--checkpoint-dir",
                str(data_dir / "ckpt-pu"),
                *fast_args,
            ]
        )
        == 0
    )
    return export
