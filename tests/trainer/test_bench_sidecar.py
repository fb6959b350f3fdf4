"""The sidecar throughput benchmark's run (`python -m trainer.bench.sidecar`), small, on a real broker and
Redis it starts itself: both sides train every sample, over several partitions too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.bench import sidecar

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_small_run_over_four_partitions_trains_every_sample_on_both_sides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)  # its own broker and Redis
    monkeypatch.delenv("REDIS_URL", raising=False)
    out = tmp_path / "sidecar.json"
    args = ["--samples", "1100", "--batch-size", "256", "--rounds", "1", "--partitions", "4", "--json", str(out)]
    assert sidecar.main(args) == 0
    result = json.loads(out.read_text())
    assert result["samples"] == 1024 and result["partitions"] == 4  # whole batches
    assert result["kafka_samples_per_s"] > 0 and result["memory_samples_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["kafka_samples_per_s"] / result["memory_samples_per_s"], abs=0.01)
