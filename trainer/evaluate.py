"""``evaluate``: an export's metrics on samples (labels: the samples' ``label`` field)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from trainer import metrics
from trainer.samples import SampleTable, read_samples

log = logging.getLogger("trainer")


def evaluate(
    model: str | os.PathLike[str],
    samples: Sequence[str | os.PathLike[str]],
    deadletter: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    from trainer.export import ExportedModel

    exported = ExportedModel(model)
    rows, read = read_samples(samples, deadletter=deadletter)
    table = SampleTable(rows)
    predictions = exported.predict(table)
    report = metrics.evaluate(table.labels, predictions)
    report.update(
        {
            "model": str(exported.directory),
            "samples": [str(s) for s in samples],
            "bad_records": read.bad,
            "duplicate_sample_ids": read.duplicates,
        }
    )
    return report
