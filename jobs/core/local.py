"""An in-memory runtime for the join core: keyed state in a dict, event-time timers in a heap.

This is what ``replay --engine local`` drives, and what the tests use as the reference runtime.
It is pure (no I/O): feed events with :meth:`LocalJoinRunner.process` (or a whole iterable with
:meth:`LocalJoinRunner.run`, the fast path), end a bounded input with :meth:`LocalJoinRunner.finish`,
and take the outputs from ``samples`` / ``unmatched`` (drain them as you go to keep memory flat).

The watermark follows Flink's BoundedOutOfOrderness, advanced after every event (the event itself
is processed under the watermark of the events before it, as in Flink). Timers are deduplicated
per key and timestamp and fire in timestamp order (keys of one timestamp in registration order).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable

from jobs.core.events import Event
from jobs.core.join import Sample, SampleJoin, Step, UnmatchedLabel
from jobs.core.keyed import DictStore, KeyedRunner, Outputs, StateStore
from jobs.core.state import WATERMARK_END, WATERMARK_START, RequestState


class LocalJoinRunner:
    """A :class:`KeyedRunner` in memory under one bounded-out-of-orderness watermark."""

    def __init__(self, join: SampleJoin, out_of_orderness_ms: int | None = None, *, store: StateStore | None = None):
        """``store``: where states live, live objects in a dict by default; the tests pass one that keeps
        them serialized, as Flink or Redis would (``jobs.runtime.state_bytes.BytesStore``)."""
        self.join = join
        ooo = join.config.out_of_orderness if out_of_orderness_ms is None else out_of_orderness_ms
        if ooo < 0:
            raise ValueError(f"out_of_orderness must be non-negative, got {ooo} ms")
        self.out_of_orderness_ms = ooo
        self.keyed = KeyedRunner(join, DictStore() if store is None else store)
        self.max_event_time_ms: int | None = None
        self.watermark = WATERMARK_START
        self.samples: list[Sample] = self.keyed.samples
        self.unmatched: list[UnmatchedLabel] = self.keyed.unmatched
        self.ignored_label_types: Counter[str] = self.keyed.ignored_label_types
        self.events = 0

    def drain(self) -> Outputs:
        """The samples and unmatched labels emitted since the last drain (see KeyedRunner.drain)."""
        return self.keyed.drain()

    @property
    def timers_fired(self) -> int:
        return self.keyed.timers_fired

    # -- feeding -------------------------------------------------------------------------------
    def process(self, event: Event, *, advance: bool = True) -> None:
        """Process one event under the current watermark, then (by default) advance the watermark."""
        self.events += 1
        self.keyed.on_event(event, self.watermark)
        t = event.event_time_ms
        m = self.max_event_time_ms
        if m is None or t > m:
            self.max_event_time_ms = t
            if advance:
                self.advance_to(t - self.out_of_orderness_ms - 1)

    def run(
        self,
        events: Iterable[Event],
        on_flush: Callable[[], None] | None = None,
        flush_every: int = 8192,
    ) -> None:
        """Process ``events`` like :meth:`process` each, in one tight loop (the replay's hot path).

        ``on_flush`` is called whenever ``samples`` or ``unmatched`` hold ``flush_every`` records;
        it should :meth:`drain` them. Does not :meth:`finish`.
        """
        if not isinstance(self.keyed.store, DictStore):
            for event in events:
                self.process(event)
                if on_flush is not None and (len(self.samples) >= flush_every or len(self.unmatched) >= flush_every):
                    on_flush()
            return
        # KeyedRunner.on_event / fire, inlined over its DictStore and TimerQueue (the replay's hot path)
        event_into = self.join.event_into
        handler_of = self.join.handlers.get
        timer_into = self.join.timer_into
        states = self.keyed.store
        assert isinstance(states, DictStore)
        get = states.get
        pop = states.pop
        queue = self.keyed.queue
        assert queue is not None
        heap = queue.heap
        keys_at = queue.keys_at
        keys_get = keys_at.get
        keys_pop = keys_at.pop
        push = heapq.heappush
        hpop = heapq.heappop
        ignored_counts = self.ignored_label_types
        samples = self.samples
        unmatched = self.unmatched
        ignored: list[str] = []
        timers: list[int] = []
        # One Step reused for every call: outputs land directly in our lists.
        step = Step(None, timers, samples, unmatched, ignored)
        lag = self.out_of_orderness_ms + 1
        m = self.max_event_time_ms
        wm = self.watermark
        n = 0
        fired = 0
        try:
            for event in events:
                n += 1
                key = event.request_id
                old = step.state = get(key)
                (handler_of(type(event)) or event_into)(step, event, wm)
                state = step.state
                if state is not old:
                    if state is None:
                        pop(key, None)
                    else:
                        states[key] = state
                if timers:
                    for ts in timers:
                        bucket = keys_get(ts)
                        if bucket is None:
                            keys_at[ts] = {key: None}
                            push(heap, ts)
                        elif key not in bucket:
                            bucket[key] = None
                    timers.clear()
                t = event.event_time_ms
                if m is None or t > m:
                    m = t
                    if t - lag > wm:
                        wm = t - lag
                        while heap and heap[0] <= wm:
                            ts = hpop(heap)
                            for tkey in keys_pop(ts):
                                old = step.state = get(tkey)
                                if old is None:
                                    continue
                                fired += 1
                                timer_into(step, ts, wm)
                                state = step.state
                                if state is not old:
                                    if state is None:
                                        pop(tkey, None)
                                    else:
                                        states[tkey] = state
                                if timers:
                                    for ts2 in timers:
                                        bucket = keys_get(ts2)
                                        if bucket is None:
                                            keys_at[ts2] = {tkey: None}
                                            push(heap, ts2)
                                        elif tkey not in bucket:
                                            bucket[tkey] = None
                                    timers.clear()
                        if on_flush is not None and (len(samples) >= flush_every or len(unmatched) >= flush_every):
                            on_flush()
        finally:
            step.state = None
            self.events += n
            self.keyed.timers_fired += fired
            self.max_event_time_ms = m
            self.watermark = wm
            if ignored:
                ignored_counts.update(ignored)
        if on_flush is not None and (len(samples) >= flush_every or len(unmatched) >= flush_every):
            on_flush()

    def advance_to(self, watermark_ms: int) -> None:
        """Advance the watermark (never backwards) and fire every timer at or before it."""
        if watermark_ms <= self.watermark:
            return
        self.watermark = watermark_ms
        self.keyed.fire(watermark_ms)

    def current_watermark(self) -> int:
        """The watermark the events seen so far allow (what :meth:`process` advances to)."""
        m = self.max_event_time_ms
        return WATERMARK_START if m is None else m - self.out_of_orderness_ms - 1

    def finish(self) -> None:
        """End of a bounded input: the watermark goes to +inf and every pending timer fires."""
        self.advance_to(WATERMARK_END)

    # -- inspection ----------------------------------------------------------------------------
    @property
    def states(self) -> DictStore:
        store = self.keyed.store
        assert isinstance(store, DictStore), "states are kept by the store given: see state_of"
        return store

    def pending_keys(self) -> int:
        return len(self.keyed.store)  # type: ignore[arg-type]

    def pending_timers(self) -> int:
        queue = self.keyed.queue
        return 0 if queue is None else len(queue)

    def state_of(self, key: str) -> RequestState | None:
        return self.keyed.store.get(key)
