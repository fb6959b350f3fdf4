"""The shipped configs of the join and the trainer agree where one depends on the other.

The PU correction's pending-click estimate assumes LATE_POSITIVEs stop at the join's horizon, and the
sidecar's dedup must remember a sample at least that long; the two live in different files (and
deployables), so nothing but this test ties them together.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.demo.plan import DemoPlan
from jobs.config import SampleJoinConfig
from trainer.config import TrainerConfig

ROOT = Path(__file__).resolve().parents[2]


def _join_horizon_ms(task: str) -> int:
    join = SampleJoinConfig.load(ROOT / "infra" / "sample_join.yaml").join
    return next(t.horizon for t in join.tasks if t.name == task)


def _demo_horizon_ms() -> int:
    """The horizon the demo runs its join with (every demo plan has the same)."""
    return next(f.default for f in dataclasses.fields(DemoPlan) if f.name == "horizon_ms")  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("trainer_config", "join_horizon_ms"),
    [
        ("infra/trainer.yaml", lambda task: _join_horizon_ms(task)),
        ("infra/demo/trainer.yaml", lambda task: _demo_horizon_ms()),
    ],
    ids=["deployment", "demo"],
)
def test_the_trainer_corrects_for_the_horizon_the_join_runs_with(trainer_config, join_horizon_ms) -> None:
    config = TrainerConfig.load(ROOT / trainer_config)
    horizon = join_horizon_ms(config.sidecar.task)
    assert config.loss.attribution_horizon_ms == horizon, (
        f"{trainer_config}: loss.attribution_horizon_ms is {config.loss.attribution_horizon_ms} ms, "
        f"the join's horizon for task {config.sidecar.task} is {horizon} ms"
    )
    assert config.sidecar.dedup.horizon >= horizon, f"{trainer_config}: dedup forgets samples before the horizon"
