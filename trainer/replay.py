"""DEFER's second ingestion, added to a samples file for ``loss.name: defer`` (:mod:`trainer.losses.defer`).

The join emits each impression once (a POSITIVE, or a NEGATIVE and maybe later a LATE_POSITIVE). DEFER
trains on a stream that ingests every impression a second time: a late click's LATE_POSITIVE is that
second ingestion; every other impression is ingested again at ``impression time + H`` with its label as
known then (a POSITIVE again, or a NEGATIVE that is now a real negative). :func:`with_horizon_duplicates`
adds those duplicates where they fall within the file's stream time; a file ends before the horizon of
its last ``H`` of impressions, as a live stream does.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence

from trainer.samples import LATE_POSITIVE, Sample

DUPLICATE_SUFFIX = ":horizon"  # appended to a duplicate's sample_id


def with_horizon_duplicates(samples: Sequence[Sample], horizon_ms: int) -> list[Sample]:
    """``samples`` (in emission order) with each first emission's duplicate at its impression time +
    ``horizon_ms``, merged in by emit time, up to the last emit time of ``samples``. A NEGATIVE whose
    impression has a LATE_POSITIVE gets none; samples without an impression id or time get none."""
    times = [s.emit_time_ms for s in samples if s.emit_time_ms is not None]
    if not times:
        return list(samples)
    last = max(times)
    clicked_late = {s.impression_id for s in samples if s.attribution == LATE_POSITIVE and s.label}
    def emitted(sample: Sample) -> int:
        return last if sample.emit_time_ms is None else sample.emit_time_ms

    duplicates = sorted(
        (
            dataclasses.replace(
                s,
                sample_id=None if s.sample_id is None else s.sample_id + DUPLICATE_SUFFIX,
                emit_time_ms=s.impression_time_ms + horizon_ms,
            )
            for s in samples
            if s.attribution != LATE_POSITIVE
            and s.impression_id is not None
            and s.impression_time_ms is not None
            and s.impression_time_ms + horizon_ms <= last
            and not (s.label == 0 and s.impression_id in clicked_late)
        ),
        key=emitted,
    )
    return list(heapq.merge(duplicates, samples, key=emitted))
