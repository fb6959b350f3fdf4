"""Samples from several partitions handed to training in emit-time order.

A consumer catching up a backlog reads each partition a fetch at a time (1 MiB by default): a small
backlog comes one whole partition after another, a large one in chunks of hours of stream time per
partition. Trained in that order, a one-pass model sees the stream's hours several times over, and its
level comes out ~0.1 lower than the same samples trained in emission order (`fit --order stream`)
on uniform delays. So, as Kafka Streams synchronises its partitions by timestamp, the sidecar holds
the messages consumed and hands on the one with the smallest emit time, once every assigned partition
has a message held or is caught up (nothing more to read now). A partition that is neither holds the
others back for at most ``max_wait``, and at most ``max_buffered`` messages are held; past either,
what is held goes on in order. Caught up, every partition but the one a message came from is at its
end, so nothing waits.

Each partition's messages keep their order (its offsets advance as they are handed on: what is held
at a stop is read again after a restart, as prefetched messages are). A message that is no sample (a
dead letter) goes on as soon as it is at the head of its partition.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Collection
from typing import Generic, Protocol, TypeVar

from trainer.samples import Sample


class Consumed(Protocol):
    """A consumed message as ordering reads it (:class:`trainer.sidecar.consume.Decoded`)."""

    partition: int
    sample: Sample | None


M = TypeVar("M", bound=Consumed)


def emit_time(message: Consumed) -> float:
    sample = message.sample
    if sample is None or sample.emit_time_ms is None:
        return -math.inf
    return float(sample.emit_time_ms)


class EmitTimeOrder(Generic[M]):
    """Holds consumed messages per partition and hands them on in emit-time order (see the module)."""

    def __init__(self, max_wait_s: float, max_buffered: int):
        self.max_wait_s = max_wait_s
        self.max_buffered = max_buffered
        self._held: dict[int, deque[M]] = {}
        self._heads: list[tuple[float, int, int]] = []  # (emit time, arrival, partition) of each head
        self._count = 0
        self._arrivals = 0
        self._waiting_since: float | None = None
        self.forced = 0  # hand-ons that did not wait for every partition (max_wait or max_buffered)

    def __len__(self) -> int:
        return self._count

    def add(self, messages: list[M]) -> None:
        for message in messages:
            queue = self._held.setdefault(message.partition, deque())
            if not queue:
                self._push_head(message)
            queue.append(message)
        self._count += len(messages)

    def _push_head(self, message: M) -> None:
        self._arrivals += 1
        heapq.heappush(self._heads, (emit_time(message), self._arrivals, message.partition))

    def take(self, assigned: Collection[int], caught_up: Callable[[int], bool], now: float) -> list[M]:
        """The messages that can go on now, in emit-time order. ``assigned``: the partitions read;
        ``caught_up(p)``: partition ``p`` has nothing more to read now."""
        out: list[M] = []
        if not self._count:
            self._waiting_since = None
            return out
        waiting = {p for p in assigned if not self._held.get(p) and not caught_up(p)}
        if waiting and self._waiting_since is None:
            self._waiting_since = now
        timed_out = self._waiting_since is not None and now - self._waiting_since >= self.max_wait_s
        over = self._count > self.max_buffered
        if waiting and not (timed_out or over):
            return out
        if waiting:
            self.forced += 1
        while self._heads:
            if waiting and not timed_out and self._count <= self.max_buffered // 2:
                break  # held down to half the bound: wait for the others again
            _, _, partition = heapq.heappop(self._heads)
            queue = self._held[partition]
            out.append(queue.popleft())
            self._count -= 1
            if queue:
                self._push_head(queue[0])
            elif partition in assigned and not caught_up(partition) and not timed_out:
                waiting.add(partition)
                if not over:
                    break  # this partition may hold the next message in order
        self._waiting_since = now if waiting and self._count else None
        return out
