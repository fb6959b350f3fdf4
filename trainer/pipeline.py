"""Batch order for offline fit: which rows of a table go into which train step.

``shuffle``: each epoch visits the *impressions* in a seeded pseudo-random order that depends only on
the seed, the epoch and the impression ids (not on the files' order), ``batch_size`` impressions per
step with all their samples: a NEGATIVE and its LATE_POSITIVE share a step, so the PU loss's undo term
meets the term it undoes, and two files with the same impressions (the stream, and the same
impressions with their true labels) are cut into the same batches. ``stream``: the table's own order
(the files' order, as the streaming sidecar sees it), ``batch_size`` samples per step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np

from trainer.samples import SampleTable

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that scrambles all bits."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (x ^ (x >> np.uint64(31))) & _MASK


def impression_hashes(table: SampleTable, seed: int) -> np.ndarray:
    """Per sample, a seeded 64-bit hash of its impression id (of its sample id, or index, without one)."""
    key = seed.to_bytes(8, "little", signed=True)
    cache: dict[str, int] = {}
    out = np.empty(len(table), np.uint64)
    for i, sample in enumerate(table.samples):
        name = sample.impression_id or sample.sample_id or f"#{i}"
        value = cache.get(name)
        if value is None:
            digest = hashlib.blake2b(name.encode(), digest_size=8, key=key).digest()
            value = cache[name] = int.from_bytes(digest, "little")
        out[i] = value
    return out


def batch_rows(
    table: SampleTable, batch_size: int, order: str, seed: int, epoch: int, hashes: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    n = len(table)
    if order == "stream":
        for start in range(0, n, batch_size):
            yield np.arange(start, min(start + batch_size, n))
        return
    if hashes is None:
        hashes = impression_hashes(table, seed)
    with np.errstate(over="ignore"):
        keys = _mix(hashes + np.uint64(epoch) * np.uint64(0x9E3779B97F4A7C15))
    rows = np.argsort(keys, kind="stable")  # samples of one impression are adjacent (equal keys)
    sorted_keys = keys[rows]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])  # first row of each impression
    for first in range(0, len(starts), batch_size):
        begin = starts[first]
        end = starts[first + batch_size] if first + batch_size < len(starts) else n
        yield rows[begin:end]
