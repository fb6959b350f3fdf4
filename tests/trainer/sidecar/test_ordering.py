"""Emit-time order across partitions (trainer.sidecar.ordering), pure: what a backlog read a partition at
a time hands to training, and that nothing waits once caught up."""

from __future__ import annotations

import random
from dataclasses import dataclass

from trainer.samples import Sample
from trainer.sidecar.ordering import EmitTimeOrder


@dataclass
class Message:
    partition: int
    offset: int
    sample: Sample | None


def message(partition: int, offset: int, emit: int | None) -> Message:
    """A message whose sample is emitted at ``emit`` (None: a dead letter, no sample)."""
    if emit is None:
        return Message(partition, offset, None)
    sample = Sample(f"i{partition}.{offset}", None, "u", "v", 0, {}, {}, {}, 0, 1, emit - 600_000, emit)
    return Message(partition, offset, sample)


def backlog(partitions: int, per_partition: int, seed: int) -> list[list[Message]]:
    """Each partition's messages, emit times rising within each (as the join writes them)."""
    rng = random.Random(seed)
    out = []
    for p in range(partitions):
        times = sorted(rng.randrange(0, 10_000_000) for _ in range(per_partition))
        out.append([message(p, offset, t) for offset, t in enumerate(times)])
    return out


def emit_times(messages: list[Message]) -> list[int]:
    return [m.sample.emit_time_ms for m in messages if m.sample is not None and m.sample.emit_time_ms is not None]


def test_a_backlog_read_one_partition_after_another_goes_on_in_emit_time_order() -> None:
    partitions = backlog(4, 500, seed=1)
    order: EmitTimeOrder[Message] = EmitTimeOrder(max_wait_s=2.0, max_buffered=10_000)
    read: set[int] = set()  # partitions read to their end so far
    out: list[Message] = []
    for p, messages in enumerate(partitions):  # one fetch per partition, in turn
        for start in range(0, len(messages), 100):
            order.add(messages[start : start + 100])
            out += order.take(range(4), lambda q: q in read, now=0.0)
        read.add(p)
        out += order.take(range(4), lambda q: q in read, now=0.0)
    assert len(out) == 2000 and len(order) == 0
    assert emit_times(out) == sorted(emit_times(out))
    for p in range(4):  # each partition's offsets in their order
        assert [m.offset for m in out if m.partition == p] == list(range(500))
    assert order.forced == 0


def test_caught_up_partitions_hold_nothing_back() -> None:
    order: EmitTimeOrder[Message] = EmitTimeOrder(max_wait_s=2.0, max_buffered=10_000)
    order.add([message(0, 0, 50), message(0, 1, 60)])
    # partitions 1-3 are at their end: the live case, each message goes on as it comes
    assert [m.offset for m in order.take(range(4), lambda q: q != 0, now=0.0)] == [0, 1]


def test_a_partition_not_caught_up_holds_the_others_back_at_most_max_wait() -> None:
    order: EmitTimeOrder[Message] = EmitTimeOrder(max_wait_s=2.0, max_buffered=10_000)
    order.add([message(0, 0, 50)])
    assert order.take(range(2), lambda q: False, now=10.0) == []
    assert order.take(range(2), lambda q: False, now=11.9) == []
    assert [m.offset for m in order.take(range(2), lambda q: False, now=12.0)] == [0]
    assert order.forced == 1
    order.add([message(1, 0, 40), message(0, 1, 70)])
    assert [m.sample.emit_time_ms for m in order.take(range(2), lambda q: False, now=12.5) if m.sample] == [40]
    assert len(order) == 1  # partition 0's 70 waits again for partition 1


def test_held_messages_are_bounded() -> None:
    order: EmitTimeOrder[Message] = EmitTimeOrder(max_wait_s=60.0, max_buffered=100)
    order.add([message(0, i, i) for i in range(150)])
    out = order.take(range(2), lambda q: False, now=0.0)  # partition 1 has nothing and is not at its end
    assert [m.offset for m in out] == list(range(100)) and len(order) == 50 and order.forced == 1


def test_a_message_without_a_sample_goes_on_at_the_head_of_its_partition() -> None:
    order: EmitTimeOrder[Message] = EmitTimeOrder(max_wait_s=2.0, max_buffered=10_000)
    order.add([message(0, 0, 100), message(0, 1, None), message(1, 0, 10), message(1, 1, 200)])
    out = order.take(range(2), lambda q: True, now=0.0)
    assert [(m.partition, m.offset) for m in out] == [(1, 0), (0, 0), (0, 1), (1, 1)]
