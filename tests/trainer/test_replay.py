"""DEFER's second ingestion added to a samples file (trainer/replay.py)."""

from __future__ import annotations

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
