"""Batch order for offline fit: which rows of a table go into which train step.

``shuffle``: each epoch a seeded random order of *impressions*; all samples of one impression (a
NEGATIVE and its LATE_POSITIVE) land in the same batch, so the PU loss's undo term meets the step
it undoes. ``stream``: the table's own order (the files' order, as the streaming sidecar sees it).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from trainer.samples import SampleTable


def batch_rows(table: SampleTable, batch_size: int, order: str, seed: int, epoch: int) -> Iterator[np.ndarray]:
    n = len(table)
    if order == "stream":
        for start in range(0, n, batch_size):
            yield np.arange(start, min(start + batch_size, n))
        return
    groups = table.group_keys()
    _, group_index = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng([seed, epoch])
    rank = rng.permutation(int(group_index.max()) + 1 if n else 0)
    rows = np.argsort(rank[group_index], kind="stable")  # rows in the shuffled order of their groups
    sorted_groups = rank[group_index][rows]
    start = 0
    while start < n:
        end = min(start + batch_size, n)
        # never split an impression's samples across two batches
        while end < n and sorted_groups[end] == sorted_groups[end - 1]:
            end += 1
        yield rows[start:end]
        start = end
