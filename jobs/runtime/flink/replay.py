"""``replay --engine flink``: the join core inside PyFlink, on Flink's local MiniCluster.

Graph (docs/architecture.md: thread mode; the events file is read with FileSource text lines)::

    FileSource(text lines, p1) -> ParseJsonLines (p1: counts line numbers; bad lines -> dead letter)
      -> event time + a watermark after every event (max seen - join.out_of_orderness - 1 ms, as the
         local engine) -> key_by(request_id)
      -> JoinFunction (p = parallelism; ValueState of RequestState bytes, event-time timers)
      -> samples (main output) / unmatched (side output) / dead letters -> FileSinks

The sinks write part files into a scratch directory beside ``out``; once the job has finished they
are concatenated into ``out``, ``unmatched`` and ``deadletter`` (temporary name, then rename), so
the outputs appear only when complete. The end of the file advances the watermark to +inf, which
fires every pending timer. Each event is processed under the watermark of the events before it, as
in the local engine, so the result is the same as the local engine's, at any parallelism (with
Flink's usual periodic watermarks the join would see a lagging watermark: still correct by the
contract, but e.g. a label beyond the horizon could be reported as ``beyond_horizon`` where the
local engine, whose state was already dropped, says ``no_impression``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from jobs.config import JoinConfig
from jobs.errors import JobError
from jobs.runtime.flink.env import (
    FlinkUnavailable,
    collect_parts,
    key_by_request_per_event,
    make_environment,
    one_line,
    text_file_sink,
)
from jobs.runtime.summary import ReplaySummary

#: 0: a watermark after every event (the table watermark assigner), as the local engine advances it
AUTO_WATERMARK_INTERVAL = "0 ms"


class FlinkReplayError(JobError):
    """The Flink replay job failed; the message is Flink's innermost reason, on one line."""


def replay_options(parallelism: int) -> dict[str, str]:
    """Flink settings of a replay run (a bounded job on a local MiniCluster)."""
    return {
        "pipeline.auto-watermark-interval": AUTO_WATERMARK_INTERVAL,
        "restart-strategy.type": "none",  # a bad record must fail the run, not loop
        "taskmanager.numberOfTaskSlots": str(parallelism),
        "table.exec.resource.default-parallelism": "1",  # parse and watermarks in input order
        "pipeline.name": "sample-join-replay",
    }


def build_replay_graph(
    env: Any,
    events: Path,
    join: JoinConfig,
    parallelism: int,
    parts: Path,
    stats_dir: Path | None,
) -> None:
    """Add the replay graph to ``env``: sinks write part files under ``parts/{samples,unmatched,deadletter}``."""
    from pyflink.common import Types, WatermarkStrategy
    from pyflink.datastream.connectors.file_system import FileSource, StreamFormat
    from pyflink.table import StreamTableEnvironment

    from jobs.runtime.flink.functions import (
        BYTES,
        DEADLETTER_LINES,
        PARSED_ROW_TYPE,
        UNMATCHED_LINES,
        JoinFunction,
        ParseJsonLines,
    )

    stats = str(stats_dir) if stats_dir is not None else None
    source = FileSource.for_record_stream_format(StreamFormat.text_line_format("UTF-8"), str(events)).build()
    lines = env.from_source(source, WatermarkStrategy.no_watermarks(), "events-file").set_parallelism(1)
    parsed = lines.process(ParseJsonLines(stats), PARSED_ROW_TYPE).name("parse-events").set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.exec.resource.default-parallelism", "1")
    keyed = key_by_request_per_event(t_env, parsed, BYTES, join.out_of_orderness)
    joined = (
        keyed.process(JoinFunction(join.model_dump(), "json", stats_dir=stats), Types.STRING())
        .name("sample-join")
        .set_parallelism(parallelism)
    )
    text_file_sink(joined, parts / "samples", "samples")
    text_file_sink(joined.get_side_output(UNMATCHED_LINES), parts / "unmatched", "unmatched")
    text_file_sink(parsed.get_side_output(DEADLETTER_LINES), parts / "deadletter", "deadletter")


def _read_stats(stats_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    parse: list[dict[str, Any]] = []
    join: list[dict[str, Any]] = []
    for path in sorted(stats_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        (parse if path.name.startswith("parse-") else join).append(data)
    return parse, join


def run_replay(
    events: Path,
    out: Path,
    unmatched: Path,
    deadletter: Path,
    join: JoinConfig,
    parallelism: int = 1,
) -> ReplaySummary:
    """Replay ``events`` through the join core on Flink; write samples, unmatched and dead letters.

    Raises :class:`FlinkReplayError` (one line) when the job fails, and
    :class:`~jobs.runtime.flink.env.FlinkUnavailable` when PyFlink or Java is missing. No output is
    left behind on failure.
    """
    started = time.perf_counter()
    events = Path(events).resolve()
    out, unmatched, deadletter = Path(out), Path(unmatched), Path(deadletter)
    if parallelism < 1:
        raise JobError(f"parallelism must be at least 1, got {parallelism}")
    try:
        with open(events, "rb"):
            pass
    except OSError as exc:
        from jobs.runtime.replay.local import InputError

        raise InputError(f"cannot read events file {events}: {exc.strerror or exc}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.parent / f".{out.name}.flink-{os.getpid()}-{time.monotonic_ns()}"
    parts = scratch / "parts"
    stats_dir = scratch / "stats"
    stats_dir.mkdir(parents=True)
    try:
        env = make_environment(parallelism, replay_options(parallelism))
        build_replay_graph(env, events, join, parallelism, parts, stats_dir)
        job_started = time.perf_counter()
        try:
            result = env.execute("sample-join-replay")
        except FlinkUnavailable:
            raise
        except Exception as exc:
            raise FlinkReplayError(f"the Flink replay job failed: {one_line(exc)}") from None
        job_seconds = time.perf_counter() - job_started
        try:  # the job's own run time (from scheduling to the end, without the MiniCluster's start)
            net_seconds = result.get_net_runtime() / 1000.0
        except Exception:  # pragma: no cover - not all Flink versions report it
            net_seconds = job_seconds
        parse_stats, join_stats = _read_stats(stats_dir)
        if len(parse_stats) != 1 or len(join_stats) != parallelism:
            raise FlinkReplayError(
                f"the Flink replay job finished without reporting its counts ({len(parse_stats)} parse and "
                f"{len(join_stats)} join instance(s) of 1 and {parallelism})"
            )
        # all three outputs are complete: now move them into place
        collect_parts(parts / "samples", out)
        collect_parts(parts / "unmatched", unmatched)
        collect_parts(parts / "deadletter", deadletter)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    summary = ReplaySummary(engine="flink")
    p = parse_stats[0]
    for js in join_stats:
        for task, attribution, n in js["samples"]:
            summary.add_sample(task, attribution, n)
        for reason, n in js["unmatched"].items():
            summary.add_unmatched(reason, n)
        summary.add_ignored(js["ignored_label_types"])
    summary.ensure_tasks(t.name for t in join.tasks)
    summary.deadlettered = p["deadlettered"]
    summary.events_read = p["events"]
    summary.lines_read = p["lines"] - p["blank"]
    summary.seconds = time.perf_counter() - started
    summary.extra = {
        "parallelism": parallelism,
        "job_seconds": round(job_seconds, 3),
        "job_net_seconds": round(net_seconds, 3),
        "timers_fired": sum(js["timers_fired"] for js in join_stats),
    }
    return summary
