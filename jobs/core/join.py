"""The sample join (docs/join.md) as per-key logic, in the shape of a Flink KeyedProcessFunction.

Keyed by ``request_id``. The runtime owns the keyed state store and the event-time timer service
and calls :meth:`SampleJoin.on_event` for each event and :meth:`SampleJoin.on_timer` when the
watermark reaches a registered timer; both return a :class:`Step`.

Decisions depend on event times only (not on when the watermark happens to advance), as long as
the input's disorder is within the allowed out-of-orderness. The rules and the choices they leave
(snapshot freeze, early labels, first-wins, reporting task, state drop) are in docs/join.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from jobs.core.events import Event, FeatureSnapshot, Impression, Label
from jobs.core.outputs import (
    ATTRIBUTIONS,
    BEYOND_HORIZON,
    DUPLICATE,
    LATE_POSITIVE,
    NEGATIVE,
    NO_IMPRESSION,
    POSITIVE,
    UNMATCHED_REASONS,
    Sample,
    Step,
    UnmatchedLabel,
)
from jobs.core.spec import JoinSpec
from jobs.core.state import (
    CLOSED,
    LATE_WAIT,
    NEG,
    OPEN,
    POS_WAIT,
    WATERMARK_END,
    WATERMARK_START,
    ImpressionState,
    RequestState,
)

_new = object.__new__

# What the per-request caps of JoinConfig turned away (keys of SampleJoin.over_cap).
IMPRESSIONS_DROPPED = "impressions_dropped"
LABELS_NOT_BUFFERED = "labels_not_buffered"

__all__ = [
    "ATTRIBUTIONS",
    "BEYOND_HORIZON",
    "DUPLICATE",
    "IMPRESSIONS_DROPPED",
    "LABELS_NOT_BUFFERED",
    "LATE_POSITIVE",
    "NEGATIVE",
    "NO_IMPRESSION",
    "POSITIVE",
    "UNMATCHED_REASONS",
    "WATERMARK_END",
    "WATERMARK_START",
    "RequestState",
    "Sample",
    "SampleJoin",
    "Step",
    "UnmatchedLabel",
]


class SampleJoin:
    """The join's per-key logic; stateless itself (all state is in the RequestState it is given),
    apart from ``over_cap``: how many events the per-request caps turned away, by kind."""

    def __init__(self, config: Any = None) -> None:
        """``config``: a :class:`JoinSpec`, or any object shaped like one (e.g. the validated
        ``jobs.config.JoinConfig``); None gives the default task ``click``."""
        config = JoinSpec() if config is None else JoinSpec.of(config)
        self.config = config
        tasks = config.tasks
        self.task_names: tuple[str, ...] = tuple(t.name for t in tasks)
        self.n_tasks = len(tasks)
        self.windows = [t.window for t in tasks]
        self.horizons = [t.horizon for t in tasks]
        self.snapshot_waits = [t.snapshot_wait for t in tasks]
        self.label_types = [t.label_type for t in tasks]
        self.max_horizon = max(self.horizons)
        self.max_impressions = config.max_impressions_per_request
        self.max_buffered_labels = config.max_buffered_labels_per_request
        self.over_cap: Counter[str] = Counter()
        by_type: dict[str, list[int]] = {}
        for k, t in enumerate(tasks):
            by_type.setdefault(t.label_type, []).append(k)
        self.tasks_by_type: dict[str, tuple[int, ...]] = {lt: tuple(ks) for lt, ks in by_type.items()}
        self.orphan_wait: dict[str, int] = {
            lt: max(self.windows[k] for k in ks) for lt, ks in self.tasks_by_type.items()
        }
        # timers of a new impression: t_i + each distinct W, and t_i + max H (the drop)
        self._impression_offsets = sorted({*self.windows, self.max_horizon})
        self._open = [OPEN] * self.n_tasks
        self._task_range = tuple(range(self.n_tasks))
        self._none: list[Label | None] = [None] * self.n_tasks
        # sample_id = impression_id + ":{task}:{attribution}"
        self._id_suffix = [{a: f":{name}:{a}" for a in ATTRIBUTIONS} for name in self.task_names]
        # event type -> its handler: event_into's dispatch, which the runners' hot paths look up directly
        self.handlers: dict[type, Callable[[Step, Any, int], None]] = {
            Impression: self._on_impression,
            Label: self._on_label,
            FeatureSnapshot: self._on_snapshot,
        }

    # -- entry points --------------------------------------------------------------------------
    def on_event(self, state: RequestState | None, event: Event, watermark_ms: int) -> Step:
        """Process one event of the key ``event.request_id`` with the watermark before it."""
        step = Step(state, [], [], [], [])
        self.event_into(step, event, watermark_ms)
        return step

    def on_timer(self, state: RequestState | None, timestamp_ms: int, watermark_ms: int) -> Step:
        """Resolve everything of this key that is due at or before ``timestamp_ms``."""
        step = Step(state, [], [], [], [])
        if state is not None:
            self.timer_into(step, timestamp_ms, watermark_ms)
        return step

    # -- the same, appending to a caller-owned Step (the in-memory runner's hot path) ------------
    def event_into(self, step: Step, event: Event, watermark_ms: int) -> None:
        """Like :meth:`on_event` with ``step.state`` as the key's state: outputs are appended to
        ``step``'s lists and ``step.state`` is set to the new state."""
        handler = self.handlers.get(type(event))
        if handler is None:
            raise TypeError(f"not an event: {type(event).__name__}")
        handler(step, event, watermark_ms)

    def timer_into(self, step: Step, timestamp_ms: int, watermark_ms: int) -> None:
        """Like :meth:`on_timer` with ``step.state`` (not None) as the key's state."""
        state = step.state
        assert state is not None
        if state.tasks is not self.task_names:
            self._adopt(state)
        ts = timestamp_ms
        drop_after = self.max_horizon
        imps = state.impressions
        dropped: list[str] | None = None
        if imps:
            windows, waits, tr = self.windows, self.snapshot_waits, self._task_range
            for iid, imp in imps.items():
                t_i = imp.impression.event_time_ms
                status = imp.status
                for k in tr:
                    st = status[k]
                    if st >= NEG:  # NEG or CLOSED: nothing is due before the drop
                        continue
                    if st == POS_WAIT:
                        if t_i + waits[k] <= ts:  # the snapshot did not come in time
                            pending = imp.pending
                            assert pending is not None
                            label = pending[k]
                            pending[k] = None
                            status[k] = CLOSED
                            step.samples.append(self._sample(state, imp, k, POSITIVE, label))
                    elif t_i + windows[k] <= ts:
                        if st == OPEN:  # the common case, inline: no label came
                            status[k] = NEG
                            step.samples.append(self._sample(state, imp, k, NEGATIVE, None))
                        else:
                            self._resolve_late_wait(state, step, imp, k)
                if t_i + drop_after <= ts:
                    if dropped is None:
                        dropped = [iid]
                    else:
                        dropped.append(iid)
            if dropped:
                for iid in dropped:
                    del imps[iid]
        if state.orphans:
            orphan_wait = self.orphan_wait
            keep = []
            for label in state.orphans:
                if label.event_time_ms + orphan_wait[label.label_type] <= ts:
                    step.unmatched.append(UnmatchedLabel(label, NO_IMPRESSION, self._reporter(label.label_type)))
                else:
                    keep.append(label)
            state.orphans = keep
        if not imps and not state.orphans:
            snap = state.snapshot
            if snap is None or dropped or snap.event_time_ms + drop_after <= ts:
                # the snapshot goes with the request's last impression, or at t_s + max H when none came
                step.state = None
            else:
                step.timers.append(snap.event_time_ms + drop_after)

    def pending_timers(self, state: RequestState | None) -> list[int]:
        """Every deadline the state still waits for (sorted); for runtimes that re-register timers."""
        if state is None:
            return []
        if state.tasks is not self.task_names:
            self._adopt(state)
        out: set[int] = set()
        for imp in state.impressions.values():
            t_i = imp.impression.event_time_ms
            for k in range(self.n_tasks):
                st = imp.status[k]
                if st == POS_WAIT:
                    out.add(t_i + self.snapshot_waits[k])
                elif st in (OPEN, LATE_WAIT):
                    out.add(t_i + self.windows[k])
            out.add(t_i + self.max_horizon)
        for label in state.orphans:
            out.add(label.event_time_ms + self.orphan_wait[label.label_type])
        if state.snapshot is not None:
            out.add(state.snapshot.event_time_ms + self.max_horizon)
        return sorted(out)

    def ignores(self, label_type: str) -> bool:
        """Whether no configured task uses labels of this type."""
        return label_type not in self.tasks_by_type

    # -- events --------------------------------------------------------------------------------
    def _on_impression(self, step: Step, event: Impression, wm: int) -> None:
        state = step.state
        if state is None:
            state = step.state = RequestState(event.request_id, self.task_names)
        elif state.tasks is not self.task_names:
            self._adopt(state)
        iid = event.impression_id
        imps = state.impressions
        if iid in imps:
            return  # duplicate impression: the first wins
        if len(imps) >= self.max_impressions:
            self.over_cap[IMPRESSIONS_DROPPED] += 1
            return
        imp = imps[iid] = ImpressionState(event, self._open.copy(), None)
        t_i = event.event_time_ms
        timers = step.timers
        for offset in self._impression_offsets:
            timers.append(t_i + offset)
        if state.orphans:
            waiting = [o for o in state.orphans if o.impression_id == iid]
            if waiting:
                state.orphans = [o for o in state.orphans if o.impression_id != iid]
                for label in waiting:
                    self._label_on_impression(state, step, imp, label, wm)

    def _on_label(self, step: Step, event: Label, wm: int) -> None:
        if event.label_type not in self.tasks_by_type:
            step.ignored_label_types.append(event.label_type)
            return
        state = step.state
        if state is None:
            state = step.state = RequestState(event.request_id, self.task_names)
        elif state.tasks is not self.task_names:
            self._adopt(state)
        imp = state.impressions.get(event.impression_id)
        if imp is None:
            if len(state.orphans) >= self.max_buffered_labels:  # a flood of labels: do not wait for these
                self.over_cap[LABELS_NOT_BUFFERED] += 1
                step.unmatched.append(UnmatchedLabel(event, NO_IMPRESSION, self._reporter(event.label_type)))
                return
            state.orphans.append(event)
            step.timers.append(event.event_time_ms + self.orphan_wait[event.label_type])
        else:
            self._label_on_impression(state, step, imp, event, wm)

    def _on_snapshot(self, step: Step, event: FeatureSnapshot, wm: int) -> None:
        state = step.state
        if state is None:
            state = step.state = RequestState(event.request_id, self.task_names)
        elif state.tasks is not self.task_names:
            self._adopt(state)
        if state.snapshot is not None:
            return  # the first snapshot of a request wins
        state.snapshot = event
        state.snapshot_watermark = wm
        if not state.impressions and not state.orphans:  # else it goes with them (see on_timer)
            step.timers.append(event.event_time_ms + self.max_horizon)
        for imp in state.impressions.values():
            status = imp.status
            for k in self._task_range:
                if status[k] == POS_WAIT:
                    pending = imp.pending
                    assert pending is not None
                    label = pending[k]
                    pending[k] = None
                    status[k] = CLOSED
                    step.samples.append(self._sample(state, imp, k, POSITIVE, label))

    # -- decisions -----------------------------------------------------------------------------
    def _label_on_impression(
        self, state: RequestState, step: Step, imp: ImpressionState, label: Label, wm: int
    ) -> None:
        t_i = imp.impression.event_time_ms
        delay = label.event_time_ms - t_i
        ks = self.tasks_by_type[label.label_type]
        reporter = ks[0]
        status = imp.status
        for k in ks:
            st = status[k]
            report = k == reporter
            if st == OPEN:
                if delay <= self.windows[k]:
                    self._positive(state, step, imp, k, label, wm)
                else:
                    status[k] = LATE_WAIT
                    if imp.pending is None:
                        imp.pending = self._none.copy()
                    imp.pending[k] = label
            elif st == NEG:
                status[k] = CLOSED
                if delay <= self.horizons[k]:
                    step.samples.append(self._sample(state, imp, k, LATE_POSITIVE, label))
                elif report:
                    step.unmatched.append(UnmatchedLabel(label, BEYOND_HORIZON, self.task_names[k]))
            elif report:  # POS_WAIT, LATE_WAIT or CLOSED: the first label already won
                step.unmatched.append(UnmatchedLabel(label, DUPLICATE, self.task_names[k]))

    def _positive(self, state: RequestState, step: Step, imp: ImpressionState, k: int, label: Label, wm: int) -> None:
        """A label with delay <= W for an OPEN pair: emit the POSITIVE, or wait for the snapshot."""
        freeze = imp.impression.event_time_ms + self.snapshot_waits[k]
        if state.snapshot is not None or wm >= freeze:
            imp.status[k] = CLOSED
            step.samples.append(self._sample(state, imp, k, POSITIVE, label))
        else:
            imp.status[k] = POS_WAIT
            if imp.pending is None:
                imp.pending = self._none.copy()
            imp.pending[k] = label
            step.timers.append(freeze)

    def _resolve_late_wait(self, state: RequestState, step: Step, imp: ImpressionState, k: int) -> None:
        """t_i + W of a LATE_WAIT pair: the NEGATIVE, then its label's LATE_POSITIVE (or unmatched)."""
        pending = imp.pending
        assert pending is not None
        label = pending[k]
        assert label is not None
        pending[k] = None
        imp.status[k] = CLOSED
        step.samples.append(self._sample(state, imp, k, NEGATIVE, None))
        if label.event_time_ms - imp.impression.event_time_ms <= self.horizons[k]:
            step.samples.append(self._sample(state, imp, k, LATE_POSITIVE, label))
        elif k == self.tasks_by_type[label.label_type][0]:
            step.unmatched.append(UnmatchedLabel(label, BEYOND_HORIZON, self.task_names[k]))

    def _sample(
        self, state: RequestState, imp: ImpressionState, k: int, attribution: str, label: Label | None
    ) -> Sample:
        ev = imp.impression
        t_i = ev.event_time_ms
        snap = state.snapshot
        wait = self.snapshot_waits[k]
        if (
            snap is not None
            and state.snapshot_watermark < t_i + wait
            and t_i - self.max_horizon <= snap.event_time_ms <= t_i + wait
        ):
            sparse, dense, has = snap.sparse, snap.dense, True
        else:
            sparse, dense, has = {}, {}, False
        if label is None:
            value, label_time, delay, emit_time = 0, None, None, t_i + self.windows[k]
        else:
            t_l = label.event_time_ms
            value, label_time, delay, emit_time = 1, t_l, t_l - t_i, t_l
        # Filled field by field, by name, on the hot path (a keyword call costs three times the whole
        # construction here); jobs.core.outputs checks Sample's fields against the schema at import,
        # and a slot left unset fails the first read of it (tests/schemas/test_record_views.py).
        sample = _new(Sample)
        sample.sample_id = ev.impression_id + self._id_suffix[k][attribution]
        sample.task = self.task_names[k]
        sample.request_id = ev.request_id
        sample.impression_id = ev.impression_id
        sample.user_id = ev.user_id
        sample.item_id = ev.item_id
        sample.position = ev.position
        sample.context = ev.context
        sample.impression_time_ms = t_i
        sample.label = value
        sample.attribution = attribution
        sample.label_time_ms = label_time
        sample.delay_ms = delay
        sample.emit_time_ms = emit_time
        sample.sparse = sparse
        sample.dense = dense
        sample.has_snapshot = has
        return sample

    # -- helpers -------------------------------------------------------------------------------
    def _reporter(self, label_type: str) -> str:
        return self.task_names[self.tasks_by_type[label_type][0]]

    def _adopt(self, state: RequestState) -> None:
        """Re-index a state written under another task list (e.g. restored after a config change)."""
        if state.tasks == self.task_names:
            state.tasks = self.task_names
            return
        index = {name: k for k, name in enumerate(state.tasks)}
        for imp in state.impressions.values():
            old_status, old_pending = imp.status, imp.pending
            imp.status = [old_status[index[n]] if n in index else OPEN for n in self.task_names]
            if old_pending is not None:
                imp.pending = [old_pending[index[n]] if n in index else None for n in self.task_names]
        state.orphans = [o for o in state.orphans if o.label_type in self.tasks_by_type]
        state.tasks = self.task_names
