"""DEFER's second ingestion added to a samples file (trainer/replay.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from trainer.bench.data import write_jsonl
from trainer.bench.world import World
from trainer.config import TrainerConfig
from trainer.fit import fit
from trainer.replay import DUPLICATE_SUFFIX, with_horizon_duplicates
from trainer.samples import LATE_POSITIVE, NEGATIVE, POSITIVE, Sample

H = 24 * 3_600_000
W = 600_000


def sample(impression: str, attribution: int, impression_time: int, emit_time: int) -> Sample:
    label = 0 if attribution == NEGATIVE else 1
    delay = None if label == 0 else emit_time - impression_time
    name = {POSITIVE: "POSITIVE", NEGATIVE: "NEGATIVE", LATE_POSITIVE: "LATE_POSITIVE"}[attribution]
    return Sample(
        f"{impression}:click:{name}", impression, "u", "v", 0, {}, {}, {}, label, attribution,
        impression_time, emit_time, delay,
    )


def test_every_impression_older_than_the_horizon_is_ingested_twice() -> None:
    hour = 3_600_000
    stream = sorted(
        [
            sample("clicked", POSITIVE, 0, 60_000),  # within W: its duplicate at H
            sample("late", NEGATIVE, hour, hour + W),  # a late click: the LATE_POSITIVE is its second ingestion
            sample("late", LATE_POSITIVE, hour, 5 * hour),
            sample("never", NEGATIVE, 2 * hour, 2 * hour + W),  # a real negative: again at H
            sample("young", NEGATIVE, 20 * hour, 20 * hour + W),  # its horizon is past the file's end
            sample("end", NEGATIVE, 26 * hour, 26 * hour + W),
        ],
        key=lambda s: s.emit_time_ms,
    )
    out = with_horizon_duplicates(stream, H)
    duplicates = [s for s in out if s.sample_id.endswith(DUPLICATE_SUFFIX)]
    assert [(s.impression_id, s.attribution, s.label, s.emit_time_ms) for s in duplicates] == [
        ("clicked", POSITIVE, 1, H),
        ("never", NEGATIVE, 0, 2 * hour + H),
    ]
    assert [s.emit_time_ms for s in out] == sorted(s.emit_time_ms for s in out)  # merged in emission order
    assert [s for s in out if not s.sample_id.endswith(DUPLICATE_SUFFIX)] == stream  # nothing else moves
    assert len({s.sample_id for s in out}) == len(out)  # a replay's dedup keeps both


def test_a_stream_younger_than_the_horizon_gains_nothing() -> None:
    stream = [sample("a", NEGATIVE, 0, W), sample("b", POSITIVE, 1000, 2000)]
    assert with_horizon_duplicates(sorted(stream, key=lambda s: s.emit_time_ms), H) == sorted(
        stream, key=lambda s: s.emit_time_ms
    )
    assert with_horizon_duplicates([], H) == []


def test_fit_with_loss_defer_trains_on_the_duplicates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = World("exponential", ctr=0.3, late_share=0.5, seed=5).generate(3000, 1_700_000_000_000, 36.0, 0, "d.").rows
    end = rows[-1]["emit_time_ms"]
    late = {s["impression_id"] for s in rows if s["attribution"] == "LATE_POSITIVE"}
    expected = sum(  # the first emissions past the horizon of the impressions without a late click
        s["attribution"] != "LATE_POSITIVE" and s["impression_time_ms"] + H <= end and s["impression_id"] not in late
        for s in rows
    )
    overrides = {"loss.name": "defer", "fit.order": "stream", "fit.epochs": 1, "fit.batch_size": 128}
    with caplog.at_level(logging.INFO, logger="trainer"):
        result = fit([write_jsonl(tmp_path / "s.jsonl", rows)], TrainerConfig.load(None, overrides), tmp_path / "m")
    assert expected > 500 and result.samples == len(rows) + expected
    assert f"defer: {expected} duplicates at the attribution horizon added" in caplog.text
    assert (tmp_path / "m" / "saved_model.pb").is_file()
