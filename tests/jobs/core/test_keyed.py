"""The runner's hand-off: drain() gives the outputs to the caller; the core keeps filling its buffers."""

from __future__ import annotations

from jobs.core import SampleJoin
from jobs.core.keyed import KeyedRunner
from jobs.core.local import LocalJoinRunner
from tests.jobs.core.helpers import imp, join_config, lab, snap


def test_drain_hands_over_the_outputs_in_order_and_empties_the_buffers() -> None:
    runner = LocalJoinRunner(SampleJoin(join_config()))
    for event in (imp("r1", "i1", 1_000), snap("r1", 1_000), lab("r1", "i1", 2_000),
                  imp("r2", "i2", 3_000), snap("r2", 3_000)):
        runner.process(event)
    emitted = [s.sample_id for s in runner.samples]
    assert emitted, "the click within the window gives a sample"
    taken = runner.drain()
    assert [s.sample_id for s in taken.samples] == emitted
    assert runner.samples == [] and runner.unmatched == []
    assert taken.samples is not runner.samples and taken.unmatched is not runner.unmatched
    taken.samples.clear()  # the caller owns the lists it was given
    runner.finish()  # r2 ends without a label: its NEGATIVE lands in the (same) buffers
    assert [s.impression_id for s in runner.samples] == ["i2"]
    assert [s.impression_id for s in runner.drain().samples] == ["i2"]
    assert runner.drain() == ([], [])


def test_the_keyed_runner_and_the_local_runner_drain_the_same_buffers() -> None:
    runner = LocalJoinRunner(SampleJoin(join_config()))
    keyed: KeyedRunner = runner.keyed
    runner.process(imp("r1", "i1", 1_000))
    runner.process(snap("r1", 1_000))
    runner.process(lab("r1", "i1", 2_000))
    assert keyed.drain().samples and runner.drain() == ([], [])
