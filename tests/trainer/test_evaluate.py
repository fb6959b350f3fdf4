"""Per-impression scoring: an impression's NEGATIVE and LATE_POSITIVE are one clicked impression."""

from __future__ import annotations

from trainer.evaluate import final_labels
from trainer.samples import LATE_POSITIVE, NEGATIVE, POSITIVE, Sample


def sample(impression_id: str | None, label: int, attribution: int, user: str = "u1") -> Sample:
    return Sample(
        sample_id=None if impression_id is None else f"{impression_id}:click:{attribution}",
        impression_id=impression_id,
        user_id=user,
        item_id="v1",
        position=0,
        context={},
        sparse={},
        dense={},
        label=label,
        attribution=attribution,
    )


def test_late_positive_turns_its_negative_into_one_positive_row_in_place() -> None:
    rows = [
        sample("i1", 0, NEGATIVE, user="first"),
        sample("i2", 1, POSITIVE),
        sample("i3", 0, NEGATIVE),
        sample("i1", 1, LATE_POSITIVE, user="late"),
    ]
    out = final_labels(rows)
    assert [(r.impression_id, r.label) for r in out] == [("i1", 1), ("i2", 1), ("i3", 0)]
    assert out[0].user_id == "first"  # the features of the first sample, as served


def test_rows_without_impression_id_are_kept_and_repeats_add_nothing() -> None:
    rows = [sample(None, 1, POSITIVE), sample(None, 0, NEGATIVE), sample("i1", 1, POSITIVE), sample("i1", 1, POSITIVE)]
    out = final_labels(rows)
    assert [(r.impression_id, r.label) for r in out] == [(None, 1), (None, 0), ("i1", 1)]
