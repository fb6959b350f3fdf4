"""Batch order of offline fit."""

from __future__ import annotations

import numpy as np
from synth import make_samples, oracle_samples

from trainer.pipeline import batch_rows, impression_hashes
from trainer.samples import SampleTable, parse_sample


def table_of(rows) -> SampleTable:
    return SampleTable([parse_sample(r) for r in rows])


def impressions_per_batch(table: SampleTable, batches) -> list[list[str]]:
    return [sorted({table.samples[i].impression_id for i in b}) for b in batches]


def test_shuffle_keeps_an_impressions_samples_in_one_batch() -> None:
    samples, _ = make_samples(400, late_fraction=1.0, ctr_logit=0.0, seed=1)
    table = table_of(samples)
    batches = list(batch_rows(table, 16, "shuffle", seed=3, epoch=0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(table)))
    seen: dict[str, int] = {}
    for number, batch in enumerate(batches):
        for i in batch:
            assert seen.setdefault(table.samples[i].impression_id, number) == number
    assert all(len(ids) == 16 for ids in impressions_per_batch(table, batches)[:-1])


def test_same_impressions_same_batches_whatever_the_file_order() -> None:
    samples, truth = make_samples(300, late_fraction=0.6, ctr_logit=0.0, seed=2)
    stream = table_of(samples)
    oracle = table_of(list(reversed(oracle_samples(samples, truth))))  # other file, other order
    for epoch in range(2):
        a = impressions_per_batch(stream, batch_rows(stream, 32, "shuffle", 5, epoch))
        b = impressions_per_batch(oracle, batch_rows(oracle, 32, "shuffle", 5, epoch, impression_hashes(oracle, 5)))
        assert a == b
    first = impressions_per_batch(stream, batch_rows(stream, 32, "shuffle", 5, 0))
    assert first != impressions_per_batch(stream, batch_rows(stream, 32, "shuffle", 5, 1))  # new order per epoch
    assert first != impressions_per_batch(stream, batch_rows(stream, 32, "shuffle", 6, 0))  # and per seed


def test_stream_order_is_the_files_order() -> None:
    samples, _ = make_samples(100, seed=3)
    table = table_of(samples)
    batches = list(batch_rows(table, 30, "stream", 0, 0))
    assert np.concatenate(batches).tolist() == list(range(len(table)))
    assert [len(b) for b in batches[:-1]] == [30] * (len(batches) - 1)
