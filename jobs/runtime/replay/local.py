"""``replay --engine local``: the join core driven directly over an events file (JSON lines in, JSON
lines out, no network).

Outputs: samples (all tasks, each sample carrying its ``task``), unmatched labels, and dead-lettered
input lines ``{"line": N, "reason": "...", "raw": "..."}``. All three are written under temporary
names and renamed only when the run completed.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from common.output import AtomicFile, commit_all
from jobs.config import JoinConfig
from jobs.core.events import BadEvent, Event
from jobs.core.join import Sample, SampleJoin, UnmatchedLabel
from jobs.core.local import LocalJoinRunner
from jobs.errors import JobError
from jobs.runtime import _json
from jobs.runtime.replay.jsonl import deadletter_line, parse_event_line
from jobs.runtime.summary import ReplaySummary

FLUSH_EVERY = 8192  # samples / unmatched records buffered before a write

_BOUNDARY = b'},{"sample_id":'
_LINE_BREAK = b'}\n{"sample_id":'


def _sample_lines(samples: list[Sample]) -> bytes:
    # One orjson call for the whole batch (per-call costs dominate otherwise), then the array
    # is cut into lines: every element is an object whose first key is "sample_id", and its
    # nested objects (context, sparse, dense) hold only strings and numbers, so an unescaped
    # `},{"sample_id":` occurs exactly between two elements (inside a string a quote is `\"`).
    if not samples:
        return b""
    data = _json.dumps([s.to_json() for s in samples])
    return data[1:-1].replace(_BOUNDARY, _LINE_BREAK) + b"\n"


class InputError(JobError):
    """The events file cannot be opened or read."""


def _unmatched_lines(records: list[UnmatchedLabel]) -> bytes:
    return b"".join([_json.dumps(u.to_json()) + b"\n" for u in records])


def run_replay(
    events: Path,
    out: Path,
    unmatched: Path,
    deadletter: Path,
    join: JoinConfig,
    parallelism: int = 1,
) -> ReplaySummary:
    """Replay ``events`` through the join core; write samples, unmatched and dead letters.

    ``parallelism`` is accepted for signature parity with the flink engine and ignored.
    Raises :class:`InputError` when the events file cannot be read (no output is left behind).
    """
    del parallelism
    started = time.perf_counter()
    events = Path(events)
    try:
        source = open(events, "rb", buffering=1 << 20)  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read events file {events}: {exc.strerror or exc}") from exc
    summary = ReplaySummary(engine="local")
    core = SampleJoin(join)
    runner = LocalJoinRunner(core, join.out_of_orderness)
    parse = parse_event_line
    sample_counts: Counter[tuple[str, str]] = Counter()
    reason_counts: Counter[str] = Counter()
    outputs: list[AtomicFile] = []
    try:
        with source:
            out_f = AtomicFile(out)
            outputs.append(out_f)
            un_f = AtomicFile(unmatched)
            outputs.append(un_f)
            dl_f = AtomicFile(deadletter)
            outputs.append(dl_f)

            def flush() -> None:
                samples, unmatched_out = runner.drain()
                if samples:
                    for s in samples:
                        sample_counts[(s.task, s.attribution)] += 1
                    out_f.write(_sample_lines(samples))
                if unmatched_out:
                    for u in unmatched_out:
                        reason_counts[u.reason] += 1
                    un_f.write(_unmatched_lines(unmatched_out))

            counts = [0, 0, 0]  # lines, blank lines, dead-lettered lines

            def parsed() -> Iterator[Event]:
                lineno = 0
                try:
                    first = source.readline()
                    if first.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark is not part of line 1
                        first = first[3:]
                    for raw in itertools.chain((first,) if first else (), source):
                        lineno += 1
                        try:
                            event = parse(raw)
                        except BadEvent as exc:
                            counts[2] += 1
                            dl_f.write(deadletter_line(lineno, str(exc), raw))
                            continue
                        if event is None:
                            counts[1] += 1
                            continue
                        yield event
                except OSError as exc:
                    raise InputError(f"cannot read events file {events} (line {lineno + 1}): {exc}") from exc
                finally:
                    counts[0] = lineno

            # The join allocates many long-lived, acyclic objects (state): the cyclic GC would only
            # re-traverse them over and over (about a quarter of the run time); it is off meanwhile.
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                runner.run(parsed(), flush, FLUSH_EVERY)
                runner.finish()
            finally:
                if gc_was_enabled:
                    gc.enable()
            flush()
            commit_all(outputs)
    finally:
        for f in outputs:
            f.discard()
    for (task, attribution), n in sample_counts.items():
        summary.add_sample(task, attribution, n)
    summary.ensure_tasks(core.task_names)
    for reason, n in reason_counts.items():
        summary.add_unmatched(reason, n)
    summary.add_ignored(runner.ignored_label_types)
    summary.over_cap = dict(core.over_cap)
    summary.deadlettered = counts[2]
    summary.events_read = runner.events
    summary.lines_read = counts[0] - counts[1]
    summary.seconds = time.perf_counter() - started
    return summary
