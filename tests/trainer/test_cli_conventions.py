"""The trainer's commands follow the project's command-line conventions, in the trainer's own venv.

The rules are tests/test_cli_conventions.py's (the jobs venv walks every command, the trainer's
included); here they run where TensorFlow is installed, with what only this venv can check: ``--help``
imports no TensorFlow, and a bad config exits 2 on the paths that load it (``fit`` with TensorFlow).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.config import DURATION_EXPECTED
from tests.test_cli_conventions import (
    TRAINER,
    all_helps,
    check_bad_values,
    check_bench_parser,
    check_defaults_shown,
    check_own_help,
    check_spellings,
    check_version,
    run_main,
)

ROOT = Path(__file__).resolve().parents[2]
UNITLESS = f"{DURATION_EXPECTED}, got 60 (a bare number has no unit)"


def test_every_trainer_command_follows_the_conventions() -> None:
    walked = all_helps((TRAINER,))
    assert [sub for _, sub, _ in walked] == list(TRAINER.subcommands)
    for command, sub, parsed in walked:
        check_own_help(parsed)
        check_version(command, sub, parsed)
        check_defaults_shown(parsed)
        check_bad_values(command, sub, parsed)
        check_spellings(parsed)


def test_help_and_version_import_no_tensorflow() -> None:
    probe = (
        "import contextlib, io, sys\n"
        "from trainer.__main__ import main\n"
        "for argv in (['--help'], ['fit', '--help'], ['run', '--help'], ['run', '--version']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr


@pytest.mark.parametrize("sub", [["versions"], ["fit", "--samples", "{samples}", "--export", "{out}"]])
def test_a_bad_config_exits_2_with_one_line(sub: list[str], train_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "trainer.yaml"
    config.write_text(f"sidecar:\n  model_dir: {tmp_path / 'model'}\n  export_interval: 60\n")
    argv = [a.format(samples=train_file, out=tmp_path / "out") for a in sub]
    code, out, err = run_main("trainer.__main__", [*argv, "--config", str(config)])
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"python -m trainer {sub[0]}: error: invalid config {config}: sidecar.export_interval: {UNITLESS}"
    ]
    assert not (tmp_path / "out").exists()


BENCHMARKS = ["delayed_feedback", "delta", "gate", "grid", "hashing", "models", "sidecar", "vocab_soak"]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_trainer_benchmarks_parse_as_every_command_does(name: str) -> None:
    check_bench_parser(f"trainer.bench.{name}")

