"""Data checks: a healthy stream passes (its cold start and its tail of late clicks included); each
corruption a paired model test cannot see fails, and says from which sample on the data is suspect."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable

import numpy as np
import pytest
from stream import stream

from trainer.config import DataChecks
from trainer.samples import LATE_POSITIVE, NEGATIVE, POSITIVE, Sample, SampleTable, parse_sample
from trainer.sidecar.data_checks import StreamStats

CONFIG = DataChecks(block=300, reference_blocks=10)
PAGE = {"feed": 1.0, "search": 1.6, "detail": 0.7}


def score(s: Sample) -> float:
    """A fixed model: the user's click rate feature and the page's effect (AUC ~0.6 on this stream)."""
    return s.dense.get("u_ctr_7d", 0.2) * PAGE.get(s.context.get("page", ""), 1.0)


def run(samples: list[Sample], batch: int = 100) -> StreamStats:
    stats = StreamStats(CONFIG)
    for start in range(0, len(samples), batch):
        part = samples[start : start + batch]
        stats.add(part, SampleTable(part).times, np.array([score(s) for s in part]), start)
    return stats


@pytest.fixture(scope="module")
def healthy() -> list[Sample]:
    return [parse_sample(r) for r in stream(12_000, seed=21, spacing_ms=1_000)]


def test_a_healthy_stream_passes_from_its_cold_start_to_its_tail_of_late_clicks(healthy: list[Sample]) -> None:
    stats = run(healthy)
    assert stats.blocks[0].warmup and not stats.blocks[-1].warmup  # the first window: POSITIVEs only
    assert [b for b in stats.blocks if b.first == 0], "the stream ends with blocks of LATE_POSITIVEs only"
    last = max(s.impression_time_ms or 0 for s in healthy if s.attribution != LATE_POSITIVE)
    rated = stats._rated(list(stats.blocks))  # impressions stopped at the end: NEGATIVEs, then late clicks
    assert rated and rated[-1].last_emit_ms <= last < stats.blocks[-1].last_emit_ms
    for fraction in (0.2, 0.4, 0.6, 0.8):
        since = int(len(healthy) * fraction) // CONFIG.block * CONFIG.block
        verdict = stats.check(since, stats.reference(since))
        assert verdict["failures"] == [], verdict["failures"]
        checks = {row["check"] for row in verdict["checks"]}
        assert checks == {"missing_rate", "distinct_share", "top_share", "late_share", "label_auc", "click_rate"}
    assert stats.check(0, None)["skipped"] == "no reference statistics yet"


def after(share: float, corrupt: Callable[[list[Sample], random.Random], list[Sample]]) -> Callable[
    [list[Sample]], tuple[list[Sample], int]
]:
    def apply(samples: list[Sample]) -> tuple[list[Sample], int]:
        k = int(len(samples) * share)
        return samples[:k] + corrupt(samples[k:], random.Random(7)), k

    return apply


def flip_labels(samples: list[Sample], rng: random.Random) -> list[Sample]:
    out = []
    for s in samples:
        if s.attribution != LATE_POSITIVE and rng.random() < 0.2:
            clicked = s.label == 0
            s = dataclasses.replace(s, label=int(clicked), attribution=POSITIVE if clicked else NEGATIVE,
                                    delay_ms=1_000 if clicked else None)
        out.append(s)
    return out


def shift_click_rate(samples: list[Sample], rng: random.Random) -> list[Sample]:
    return [dataclasses.replace(s, label=1, attribution=POSITIVE, delay_ms=1_000)
            if s.attribution == NEGATIVE and rng.random() < 0.3 else s for s in samples]


def constant_feature(samples: list[Sample], rng: random.Random) -> list[Sample]:
    return [dataclasses.replace(s, sparse={**s.sparse, "city": "c0"}) for s in samples]


def missing_feature(samples: list[Sample], rng: random.Random) -> list[Sample]:
    return [dataclasses.replace(s, context={}) for s in samples]


def drop_late_positives(samples: list[Sample], rng: random.Random) -> list[Sample]:
    return [s for s in samples if s.attribution != LATE_POSITIVE]


def shuffle_features(samples: list[Sample], rng: random.Random) -> list[Sample]:
    features = [(s.user_id, s.item_id, s.position, s.context, s.sparse, s.dense) for s in samples]
    rng.shuffle(features)
    return [dataclasses.replace(s, user_id=u, item_id=i, position=p, context=c, sparse=sp, dense=d)
            for s, (u, i, p, c, sp, d) in zip(samples, features, strict=True)]


@pytest.mark.parametrize(
    ("corruption", "check"),
    [
        (flip_labels, "click_rate"),
        (shift_click_rate, "click_rate"),
        (constant_feature, "top_share"),
        (missing_feature, "missing_rate"),
        (drop_late_positives, "late_share"),
        (shuffle_features, "label_auc"),
    ],
)
def test_each_corruption_fails_and_says_where_the_suspect_data_begins(
    healthy: list[Sample], corruption: Callable[[list[Sample], random.Random], list[Sample]], check: str
) -> None:
    samples, start = after(0.5, corruption)(healthy)
    stats = run(samples)
    since = start - 3 * CONFIG.block  # the current version: trained on clean data up to here
    verdict = stats.check(since, stats.reference(since))
    failed = {row["check"] for row in verdict["failures"]}
    assert check in failed, verdict["checks"]
    assert verdict["suspect_from"] is not None and verdict["suspect_from"] <= start
    clean = stats.check(since, stats.reference(since))
    assert json.loads(json.dumps(clean)) == clean  # the verdict goes into the registry record as JSON


def test_statistics_survive_a_restart(healthy: list[Sample]) -> None:
    cut = 34 * CONFIG.block  # a block boundary: the block being filled is not saved
    stats = run(healthy[:cut])
    again = StreamStats(CONFIG)
    again.restore(json.loads(json.dumps(stats.to_json())))
    part = healthy[cut : cut + 2 * CONFIG.block]
    for s in (stats, again):
        s.add(part, SampleTable(part).times, np.array([score(x) for x in part]), cut)
    since = cut - 3 * CONFIG.block
    assert again.check(since, again.reference(since)) == stats.check(since, stats.reference(since))
    assert again.blocks[-1] == stats.blocks[-1] and again.clock == stats.clock
