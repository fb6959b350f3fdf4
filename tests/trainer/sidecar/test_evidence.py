"""The gate's evidence: one entry per impression, labels matured in place, bounded, saved and restored."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
from stream import stream

from trainer.samples import LATE_POSITIVE, Sample, SampleTable, parse_sample
from trainer.sidecar.evidence import Evidence

MINUTE = 60_000


def feed(evidence: Evidence, samples: list[Sample], first_index: int = 0, batch: int = 50,
         current: float | None = None, version: int | None = None) -> None:
    """The samples in batches; progressive score = the sample's position in the stream / 1e6."""
    for start in range(0, len(samples), batch):
        part = samples[start : start + batch]
        table = SampleTable(part)
        progressive = (first_index + start + np.arange(len(part))) / 1e6
        scores = None if current is None else np.full(len(part), current)
        evidence.add(part, table.times, progressive, scores, version, first_index + start)


def parsed(records: list[dict[str, Any]]) -> list[Sample]:
    return [parse_sample(r) for r in records]


def test_a_late_positive_relabels_its_impression_and_never_changes_which_impressions_are_evidence() -> None:
    samples = parsed(stream(600, seed=1, spacing_ms=MINUTE // 2))
    late = [s for s in samples if s.attribution == LATE_POSITIVE]
    assert late, "the stream has late positives"
    firsts = [s for s in samples if s.attribution != LATE_POSITIVE]
    evidence = Evidence(capacity=10_000)
    feed(evidence, firsts, current=0.5, version=3)
    maturity = 30 * MINUTE
    before = evidence.take(evidence.matured(maturity))
    size = len(evidence)
    feed(evidence, late, first_index=len(firsts))  # a burst of late clicks, after everything else
    after = evidence.take(evidence.matured(maturity))
    assert len(evidence) == size == len({s.impression_id for s in firsts})  # no entry added by the burst
    # the burst moved stream time, so more impressions matured; the ones already matured all stay
    kept = np.isin(after["arrival"], before["arrival"])
    assert kept.sum() == before["arrival"].size
    changed = after["label"][kept] != before["label"][np.argsort(before["arrival"])][np.argsort(np.argsort(
        after["arrival"][kept]))]
    assert np.all(after["label"][kept][changed] == 1)  # labels only ever turn clicked
    relabelled = {s.impression_id for s in late}
    by_id = {evidence.ids[slot]: slot for slot in evidence.order()}
    for iid in relabelled:
        slot = by_id[iid]
        assert evidence.columns["label"][slot] == 1 and not evidence.columns["first_positive"][slot]
        assert evidence.columns["late_delay_ms"][slot] > 10 * MINUTE
    # scores are the ones recorded with the first sample, not the late one's
    assert np.all(after["progressive"] < len(firsts) / 1e6)
    assert np.all(after["current"] == 0.5) and np.all(after["version"] == 3)


def test_impressions_join_the_evidence_once_mature_in_stream_time() -> None:
    samples = parsed(stream(300, seed=2, spacing_ms=MINUTE))
    evidence = Evidence(capacity=10_000)
    feed(evidence, samples)
    now = evidence.stream_ms
    for maturity in (0, 30 * MINUTE, 2 * 60 * MINUTE):
        view = evidence.take(evidence.matured(maturity))
        assert np.all(view["impression_ms"] <= now - maturity)
        younger = evidence.columns["impression_ms"][evidence.order()] > now - maturity
        assert view["label"].size + int(younger.sum()) == len(evidence)
    assert evidence.matured(0, last=7).size == 7


def test_the_ring_is_bounded_and_late_positives_beyond_it_are_counted() -> None:
    samples = parsed(stream(400, seed=3, spacing_ms=MINUTE))
    evidence = Evidence(capacity=100)
    feed(evidence, samples)
    assert len(evidence) == 100 and len(evidence.index) == 100
    arrivals = evidence.columns["arrival"][evidence.order()]
    assert np.all(np.diff(arrivals) > 0)  # oldest first
    firsts = [i for i, s in enumerate(samples) if s.attribution != LATE_POSITIVE]
    assert arrivals[-1] == firsts[-1] and arrivals[0] == firsts[-100]
    ring: OrderedDict[str | None, None] = OrderedDict()  # the same rule, written directly
    lost = 0
    for s in samples:
        if s.attribution == LATE_POSITIVE:
            lost += s.impression_id not in ring
        else:
            ring[s.impression_id] = None
            if len(ring) > 100:
                ring.popitem(last=False)
    assert evidence.late_unmatched == lost > 0 and set(evidence.index) == set(ring)


def test_saved_and_restored_with_the_checkpoint() -> None:
    samples = parsed(stream(300, seed=4, spacing_ms=MINUTE))
    evidence = Evidence(capacity=1_000)
    feed(evidence, samples[:500], current=0.25, version=2)
    saved = evidence.to_arrays()
    again = Evidence(capacity=1_000)
    again.restore(saved)
    for name, column in evidence.columns.items():
        np.testing.assert_array_equal(again.take(again.order())[name], column[evidence.order()])
    assert (again.stream_ms, again.late_unmatched, again.untimed) == (
        evidence.stream_ms, evidence.late_unmatched, evidence.untimed
    )
    feed(evidence, samples[500:], first_index=500)
    feed(again, samples[500:], first_index=500)
    np.testing.assert_array_equal(again.columns["label"][again.order()], evidence.columns["label"][evidence.order()])
    smaller = Evidence(capacity=50)
    smaller.restore(saved)
    assert len(smaller) == 50 and smaller.ids[49] == evidence.ids[evidence.order()[-1]]


def test_a_share_of_impressions_chosen_by_id_the_same_each_time() -> None:
    samples = parsed(stream(1000, seed=5, spacing_ms=MINUTE))
    one, two = Evidence(capacity=10_000, share=0.25), Evidence(capacity=10_000, share=0.25)
    feed(one, samples)
    feed(two, samples, batch=17)
    assert 150 < len(one) < 350 and set(one.index) == set(two.index)
    late = {s.impression_id for s in samples if s.attribution == LATE_POSITIVE} & set(one.index)
    assert all(one.columns["label"][one.index[iid]] == 1 for iid in late)
    assert one.late_unmatched == 0  # late positives of impressions not kept are not counted as lost
