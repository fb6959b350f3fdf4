"""``evaluate``: an export's metrics on samples, per impression (its final label) or per sample."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

from trainer import metrics
from trainer.samples import Sample, SampleTable, read_samples

log = logging.getLogger("trainer")


def final_labels(rows: Sequence[Sample]) -> list[Sample]:
    """One row per impression, at its first sample's place and features, labelled 1 when any of its
    samples is positive: a stream's NEGATIVE followed by a LATE_POSITIVE is one clicked impression,
    not a negative and a positive. Rows without an impression_id stay as they are."""
    first: dict[str, int] = {}
    out: list[Sample] = []
    for row in rows:
        if row.impression_id is None:
            out.append(row)
            continue
        at = first.get(row.impression_id)
        if at is None:
            first[row.impression_id] = len(out)
            out.append(row)
        elif row.label > out[at].label:
            out[at] = dataclasses.replace(out[at], label=row.label)
    return out


def evaluate(
    model: str | os.PathLike[str],
    samples: Sequence[str | os.PathLike[str]],
    deadletter: str | os.PathLike[str] | None = None,
    per: Literal["impression", "sample"] = "impression",
) -> dict[str, Any]:
    from trainer.export import ExportedModel

    exported = ExportedModel(model)
    rows, read = read_samples(samples, deadletter=deadletter)
    scored = final_labels(rows) if per == "impression" else list(rows)
    table = SampleTable(scored)
    predictions = exported.predict(table)
    report = metrics.evaluate(table.labels, predictions)
    report.update(
        {
            "per": per,
            "samples_read": len(rows),
            "model": str(exported.directory),
            "samples": [str(s) for s in samples],
            "bad_records": read.bad,
            "duplicate_sample_ids": read.duplicates,
        }
    )
    return report
