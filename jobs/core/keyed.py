"""The keyed shell every runtime puts around the join core: a state store, an event-time timer
queue, and applying a :class:`~jobs.core.join.Step` (state, timers, outputs).

The replay runner (:mod:`jobs.core.local`), each shard of the embedded runtime and the Flink
KeyedProcessFunction all drive the core through a :class:`KeyedRunner`; they differ only in where
the state lives (:class:`StateStore`), who keeps the timers (:class:`Timers`) and where the watermark
comes from. Outputs collect in the runner's ``samples`` / ``unmatched`` buffers (the core appends to
them in place, on the hot path); the runtime takes them with :meth:`KeyedRunner.drain`, which hands
over lists the caller owns, and writes them out (to a file, Kafka or Flink's collector).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

from jobs.core.events import Event
from jobs.core.join import Sample, SampleJoin, Step, UnmatchedLabel
from jobs.core.state import RequestState


class StateStore(Protocol):
    """Where the runtime keeps each key's :class:`RequestState`."""

    def get(self, key: str, /) -> RequestState | None: ...

    def put(self, key: str, state: RequestState, /) -> None: ...

    def delete(self, key: str, /) -> None: ...


class Timers(Protocol):
    """Where the runtime registers event-time timers (deduplicated per key and timestamp)."""

    def add(self, key: str, timestamp_ms: int, /) -> None: ...


class DictStore(dict[str, RequestState]):
    """States as live objects in a dict (replay, the embedded runtime's shards)."""

    __slots__ = ()
    put = dict.__setitem__

    def delete(self, key: str) -> None:
        self.pop(key, None)


class TimerQueue:
    """Event-time timers: a heap of distinct timestamps and, per timestamp, its keys in registration
    order (a dict used as an ordered set). Plain ints compare much faster in a heap than tuples."""

    __slots__ = ("heap", "keys_at")

    def __init__(self) -> None:
        self.heap: list[int] = []
        self.keys_at: dict[int, dict[str, None]] = {}

    def add(self, key: str, timestamp_ms: int) -> None:
        bucket = self.keys_at.get(timestamp_ms)
        if bucket is None:
            self.keys_at[timestamp_ms] = {key: None}
            heapq.heappush(self.heap, timestamp_ms)
        elif key not in bucket:
            bucket[key] = None

    def due(self, watermark_ms: int) -> Iterator[tuple[int, str]]:
        """Pop and yield ``(timestamp, key)`` of every timer at or before the watermark, in timestamp
        order; timers added while iterating are yielded too when due."""
        heap, keys_at = self.heap, self.keys_at
        while heap and heap[0] <= watermark_ms:
            ts = heapq.heappop(heap)
            for key in keys_at.pop(ts):
                yield ts, key

    def __len__(self) -> int:
        return sum(len(keys) for keys in self.keys_at.values())


class Outputs(NamedTuple):
    """What the join emitted since the last drain; the caller owns both lists."""

    samples: list[Sample]
    unmatched: list[UnmatchedLabel]


def drain_buffers(samples: list[Sample], unmatched: list[UnmatchedLabel]) -> Outputs:
    """Move the buffers' contents into new lists and empty them (the core keeps appending to the
    buffers it holds): an O(n) copy of references, nothing beside the encoding that follows."""
    taken = Outputs(samples[:], unmatched[:])
    samples.clear()
    unmatched.clear()
    return taken


class KeyedRunner:
    """The join core over a state store and a timer queue: feed events and watermarks, take outputs.

    ``dirty`` (when not None) collects the keys whose state was written or deleted, for runtimes
    that checkpoint incrementally.
    """

    def __init__(
        self,
        join: SampleJoin,
        store: StateStore | None = None,
        timers: Timers | None = None,
        *,
        track_dirty: bool = False,
    ) -> None:
        self.join = join
        self.store: StateStore = DictStore() if store is None else store
        self.timers: Timers = TimerQueue() if timers is None else timers
        # our own queue, which fire() drains; None when the runtime keeps the timers (Flink)
        self.queue: TimerQueue | None = self.timers if isinstance(self.timers, TimerQueue) else None
        self.samples: list[Sample] = []
        self.unmatched: list[UnmatchedLabel] = []
        self.ignored_label_types: Counter[str] = Counter()
        self.dirty: set[str] | None = set() if track_dirty else None
        self.timers_fired = 0
        self._step = Step(None, [], self.samples, self.unmatched, [])  # reused: outputs land in our lists
        # bound once: these run for every event
        self._get, self._event_into, self._timer_into = self.store.get, join.event_into, join.timer_into
        self._handler_of = join.handlers.get  # event_into's dispatch without its call (None: not an event)
        fast = self._in_memory()
        self.apply: Callable[[str, Step], None] = self._apply if fast is None else fast[1]
        #: process one event of its key under the watermark
        self.on_event: Callable[[Event, int], None] = self._on_event if fast is None else fast[0]

    def drain(self) -> Outputs:
        """The samples and unmatched labels emitted since the last drain, in emission order."""
        return drain_buffers(self.samples, self.unmatched)

    def _on_event(self, event: Event, watermark_ms: int) -> None:
        key = event.request_id
        step = self._step
        step.state = self._get(key)
        (self._handler_of(type(event)) or self._event_into)(step, event, watermark_ms)
        self.apply(key, step)

    def on_timer(self, key: str, timestamp_ms: int, watermark_ms: int) -> bool:
        """One timer of ``key`` fired; returns False when the key has no state (nothing was due)."""
        state = self._get(key)
        if state is None:
            return False
        self.timers_fired += 1
        step = self._step
        step.state = state
        self._timer_into(step, timestamp_ms, watermark_ms)
        self.apply(key, step)
        return True

    def fire(self, watermark_ms: int) -> None:
        """Fire every queued timer at or before the watermark (in timestamp order, the keys of one
        timestamp in registration order)."""
        queue = self.queue
        assert queue is not None, "timers are kept by the runtime"
        heap = queue.heap
        if not heap or heap[0] > watermark_ms:
            return
        keys_at, pop, get, timer_into, apply, step = (
            queue.keys_at, heapq.heappop, self._get, self._timer_into, self.apply, self._step,
        )
        fired = 0
        while heap and heap[0] <= watermark_ms:
            ts = pop(heap)
            for key in keys_at.pop(ts):
                state = get(key)
                if state is None:
                    continue
                fired += 1
                step.state = state
                timer_into(step, ts, watermark_ms)
                apply(key, step)
        self.timers_fired += fired

    def _apply(self, key: str, step: Step) -> None:
        """Take a Step's state and timers; its outputs go to ``samples`` / ``unmatched`` (appended,
        unless the step already writes into them) and its ignored label types are counted."""
        state = step.state
        if state is None:
            self.store.delete(key)
        else:
            self.store.put(key, state)
        dirty = self.dirty
        if dirty is not None:
            dirty.add(key)
        timers = step.timers
        if timers:
            add = self.timers.add
            for ts in timers:
                add(key, ts)
            timers.clear()
        self._take_outputs(step)

    def _take_outputs(self, step: Step) -> None:
        if step.samples is not self.samples:
            self.samples.extend(step.samples)
            self.unmatched.extend(step.unmatched)
        if step.ignored_label_types:
            self.ignored_label_types.update(step.ignored_label_types)
            step.ignored_label_types.clear()

    def _in_memory(self) -> tuple[Callable[[Event, int], None], Callable[[str, Step], None]] | None:
        """``on_event`` and :meth:`_apply` specialised to a DictStore and a TimerQueue (the embedded
        runtime's and the replay's hot path: about a third cheaper), as closures over what they use;
        None for other stores."""
        states, queue, dirty = self.store, self.queue, self.dirty
        if not isinstance(states, DictStore) or queue is None:
            return None
        pop, heap, keys_at, push, own_samples = states.pop, queue.heap, queue.keys_at, heapq.heappush, self.samples
        bucket_of, mark, take_outputs = keys_at.get, (None if dirty is None else dirty.add), self._take_outputs

        def apply(key: str, step: Step) -> None:
            state = step.state
            if state is None:
                pop(key, None)
            else:
                states[key] = state
            if mark is not None:
                mark(key)
            timers = step.timers
            if timers:
                for ts in timers:
                    bucket = bucket_of(ts)
                    if bucket is None:
                        keys_at[ts] = {key: None}
                        push(heap, ts)
                    elif key not in bucket:
                        bucket[key] = None
                timers.clear()
            if step.samples is not own_samples or step.ignored_label_types:
                take_outputs(step)

        get, handler_of, event_into, own_step = states.get, self._handler_of, self._event_into, self._step

        def on_event(event: Event, watermark_ms: int) -> None:
            key = event.request_id
            own_step.state = get(key)
            (handler_of(type(event)) or event_into)(own_step, event, watermark_ms)
            apply(key, own_step)

        return on_event, apply

    def restore(self, key: str, state: RequestState) -> None:
        """Load a key's state (e.g. from a checkpoint) and queue the timers it waits for."""
        self.store.put(key, state)
        add = self.timers.add
        for ts in self.join.pending_timers(state):
            add(key, ts)
