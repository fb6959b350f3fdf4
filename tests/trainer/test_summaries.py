"""TensorBoard summaries: written where the trainer's extras are installed; where ``tensorboard`` is
missing anyway, off from the start with one line saying why, never a crash at the first summary
(TensorFlow 2.21 no longer installs TensorBoard; ``tf.summary.scalar`` then raises)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.schemas.without_extension import run_without
from trainer.sidecar.metrics import Summaries

ROOT = Path(__file__).resolve().parents[2]


def _scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files under ``directory``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))
    events.Reload()
    found: dict[str, list[tuple[int, float]]] = {}
    for tag in events.Tags()["tensors"]:
        import tensorflow as tf

        found[tag] = [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
    return found


def test_the_trainer_extras_pin_tensorboard() -> None:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = cfg["options.extras_require"]["trainer"].split()
    assert any(line.startswith("tensorboard==") for line in extras), extras


def test_summaries_write_event_files_with_the_values(tmp_path: Path) -> None:
    summaries = Summaries(tmp_path / "tensorboard")
    assert summaries.enabled
    summaries.scalars(1, {"loss": 0.5, "progressive_auc": None})
    summaries.scalars(2, {"loss": 0.25})
    summaries.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert _scalars(tmp_path / "tensorboard") == {"loss": [(1, 0.5), (2, 0.25)]}


def test_disabled_summaries_write_nothing_and_say_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trainer.sidecar"):
        summaries = Summaries(None)
        summaries.scalars(1, {"loss": 0.5})
        summaries.close()
    assert not summaries.enabled and not caplog.records
    assert not list(tmp_path.iterdir())


WITHOUT_TENSORBOARD = """
import json, logging
from pathlib import Path
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("trainer.sidecar").addHandler(Keep())
from trainer.sidecar.metrics import Summaries
directory = Path(DIRECTORY)
summaries = Summaries(directory)
summaries.scalars(1, {"loss": 0.5})   # the step that crashed with TBNotInstalledError
summaries.close()
print(json.dumps({"enabled": summaries.enabled, "lines": records,
                  "files": sorted(p.name for p in directory.rglob("*")) if directory.exists() else []}))
"""


def test_without_tensorboard_summaries_are_off_said_once_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "tensorboard"
    done = run_without(("tensorboard",), f"DIRECTORY = {str(directory)!r}\n" + WITHOUT_TENSORBOARD)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["enabled"] is False and result["files"] == []
    [line] = result["lines"]
    assert line.startswith("TensorBoard summaries are off: the tensorboard package cannot be imported")
    assert "sidecar.tensorboard: false" in line and "\n" not in line
