"""PyFlink plumbing shared by ``replay --engine flink``, the streaming job and the benchmarks.

* :func:`make_environment`: a ``StreamExecutionEnvironment`` in thread mode (docs/architecture.md: the Python
  functions run inside the TaskManager's JVM through pemja; process mode was ~20x slower here),
  with this interpreter as ``python.executable`` and ``python.pythonpath`` set so that the embedded
  interpreter finds the venv's packages and this project (pemja starts the *base* interpreter of a
  venv, which does not see the venv's site-packages: FLINK-38585).
* :func:`key_by_request`: event-time timestamps and watermarks, then ``key_by(request_id)``, all on
  the Java side. The parse step emits ``((key, value), event_time_ms)``; PyFlink's own
  ``assign_timestamps_and_watermarks`` / ``key_by`` would each add another Python operator (one more
  Java -> Python -> Java round trip per record, the dominant cost of a PyFlink job).
* :func:`text_file_sink` and :func:`collect_parts`: row-format file sinks into a scratch directory,
  and the concatenation of their part files into one output file, atomically.

Nothing here imports PyFlink at module level: importing this module is cheap and never fails.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.errors import JobError

if TYPE_CHECKING:  # pragma: no cover
    from pyflink.datastream import DataStream, KeyedStream, StreamExecutionEnvironment

PROJECT_ROOT = Path(__file__).resolve().parents[3]

#: Options every engine of this project runs with (overridable per call).
BASE_OPTIONS: dict[str, str] = {
    "python.execution-mode": "thread",
    # An idle Python function must not hold records back for long (process mode only, harmless here).
    "python.fn-execution.bundle.time": "50",
}


class FlinkUnavailable(JobError):
    """PyFlink (apache-flink) or Java cannot be used in this environment."""


def submitted_by_flink_cli() -> bool:
    """True when this process was started by ``flink run -py/-pym`` (PyFlink then talks to the CLI's
    JVM); the cluster's configuration and ``-pyexec`` then decide the Python side, not we."""
    return "PYFLINK_GATEWAY_PORT" in os.environ


def python_paths() -> list[str]:
    """What the embedded interpreter needs on ``sys.path``: this project and this venv's packages."""
    paths = [str(PROJECT_ROOT)]
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p and p not in paths:
            paths.append(p)
    return paths


def local_python_options() -> dict[str, str]:
    return {
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.pythonpath": os.pathsep.join(python_paths()),
    }


def make_environment(
    parallelism: int,
    options: Mapping[str, str] | None = None,
    jars: Iterable[str | os.PathLike[str]] = (),
) -> StreamExecutionEnvironment:
    """A streaming environment (local MiniCluster unless submitted by ``flink run``) in thread mode."""
    try:
        from pyflink.common import Configuration
        from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
    except ImportError as exc:  # pragma: no cover - .venv/jobs has it
        raise FlinkUnavailable(
            f"PyFlink is not installed in {sys.executable} ({exc}); use .venv/jobs/bin/python (make setup)"
        ) from None
    merged = dict(BASE_OPTIONS)
    if not submitted_by_flink_cli():
        merged.update(local_python_options())
    merged.update(options or {})
    conf = Configuration()
    for key, value in merged.items():
        conf.set_string(key, value)
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        raise FlinkUnavailable("Java is not installed (Flink needs Java 17: apt-get install openjdk-17-jre-headless)")
    try:
        env = StreamExecutionEnvironment.get_execution_environment(conf)
    except Exception as exc:  # the JVM gateway could not start
        raise FlinkUnavailable(f"cannot start Flink: {one_line(exc)}") from None
    jar_urls = [Path(j).resolve().as_uri() for j in jars]
    if jar_urls:  # appended to pipeline.jars: under `flink run` it already holds the job's own jar
        env.add_jars(*jar_urls)
    env.set_runtime_mode(RuntimeExecutionMode.STREAMING)
    env.set_parallelism(parallelism)
    return env


def key_by_request(
    parsed: DataStream,
    value_type: Any,
    out_of_orderness_ms: int,
    idleness_ms: int | None = None,
    assign_watermarks: bool = True,
) -> KeyedStream:
    """Timestamps, watermarks and ``key_by`` on a stream of ``((key: str, value), event_time_ms)``.

    ``value_type`` is the TypeInformation of ``value``. The result is a KeyedStream whose
    KeyedProcessFunction receives ``value``; its watermark is Flink's BoundedOutOfOrderness
    (max event time seen - out_of_orderness - 1 ms), per parallel instance of ``parsed``, with
    idleness handling when ``idleness_ms`` is given. ``assign_watermarks=False`` keeps the
    watermarks that come with ``parsed`` (e.g. per Kafka partition, from the source).
    """
    from pyflink.common import Duration, Types, WatermarkStrategy
    from pyflink.datastream.data_stream import DataStream, KeyedStream
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    eventtime = jvm.org.apache.flink.streaming.api.functions.python.eventtime
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(out_of_orderness_ms))
    if idleness_ms:
        strategy = strategy.with_idleness(Duration.of_millis(idleness_ms))
    j_parsed = parsed._j_data_stream
    parallelism = j_parsed.getParallelism()
    row_type = Types.ROW([Types.STRING(), value_type])
    j_stamped = j_parsed
    if assign_watermarks:
        j_stamped = j_parsed.assignTimestampsAndWatermarks(
            strategy._j_watermark_strategy.withTimestampAssigner(eventtime.CustomTimestampAssigner())
        ).setParallelism(parallelism)
        j_stamped.name("event-time")
    j_rows = j_stamped.map(eventtime.RemoveTimestampMapFunction(), row_type.get_java_type_info()).setParallelism(
        parallelism
    )
    j_rows.name("key-by-request_id")
    j_keyed = j_rows.keyBy(jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(j_keyed, value_type, DataStream(j_rows))


def sql_interval(ms: int) -> str:
    """A Flink SQL ``DAY TO SECOND`` interval literal of ``ms`` milliseconds (up to 99 days)."""
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"


def key_by_request_per_event(t_env: Any, parsed: DataStream, value_type: Any, out_of_orderness_ms: int) -> KeyedStream:
    """Like :func:`key_by_request`, for a bounded input read in order, with a watermark after every
    event instead of periodic ones (the local engine's exact semantics; needs
    ``pipeline.auto-watermark-interval: 0``).

    ``parsed`` is a stream of ``ROW_NAMED(["request_id", "event_time_ms", "value"], ...)`` at
    parallelism 1. The watermark is generated by the Table runtime's watermark assigner, which emits
    one after each record whose event time raises it when the interval is 0 (DataStream's
    BoundedOutOfOrderness generator only emits periodically); watermark = max event time seen -
    out_of_orderness - 1 ms, as Flink's BoundedOutOfOrderness. The table operators run at
    parallelism 1 (``table.exec.resource.default-parallelism``), so that the watermark follows the
    input order; the keyed function after ``key_by`` runs at the environment's parallelism.
    """
    from pyflink.common import Types
    from pyflink.datastream.data_stream import DataStream, KeyedStream
    from pyflink.java_gateway import get_gateway
    from pyflink.table import Schema

    schema = (
        Schema.new_builder()
        .column("request_id", "STRING")
        .column("event_time_ms", "BIGINT")
        .column("value", "BYTES")
        .column_by_expression("event_time", "TO_TIMESTAMP_LTZ(event_time_ms, 3)")
        .watermark("event_time", f"event_time - {sql_interval(out_of_orderness_ms + 1)}")
        .build()
    )
    table = t_env.from_data_stream(parsed, schema)
    t_env.create_temporary_view("replay_parsed", table)
    rows = t_env.sql_query("SELECT request_id, `value` FROM replay_parsed")
    row_type = Types.ROW([Types.STRING(), value_type])
    j_rows = t_env.to_append_stream(rows, row_type)._j_data_stream
    jvm = get_gateway().jvm
    j_keyed = j_rows.keyBy(jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(j_keyed, value_type, DataStream(j_rows))


def text_file_sink(stream: DataStream, directory: Path, name: str) -> None:
    """Write a stream of strings as lines into part files under ``directory`` (no buckets)."""
    from pyflink.common.serialization import Encoder
    from pyflink.datastream.connectors.file_system import BucketAssigner, FileSink, OutputFileConfig

    sink = (
        FileSink.for_row_format(str(directory), Encoder.simple_string_encoder("UTF-8"))
        .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner())
        .with_output_file_config(OutputFileConfig.builder().with_part_prefix(name).with_part_suffix(".part").build())
        .build()
    )
    stream.sink_to(sink).name(f"{name}-files")


def part_files(directory: Path) -> list[Path]:
    """Finished part files of a FileSink directory (in-progress ones are hidden, dot-prefixed)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def collect_parts(directory: Path, target: Path) -> None:
    """Concatenate the part files of ``directory`` into ``target`` atomically (temp + rename)."""
    from common.output import AtomicFile

    parts = part_files(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1 and parts[0].stat().st_dev == target.parent.stat().st_dev:
        os.replace(parts[0], target)
        return
    with AtomicFile(target) as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out.file, 1 << 20)
        out.commit()


_JAVA_FRAME = re.compile(r"\s+at [\w$.<>/]+\(.*")


def one_line(exc: BaseException) -> str:
    """The innermost useful message of a (Py4J-wrapped) Flink failure, on one line."""
    text = str(exc)
    for marker in ("pemja.core.PythonException:", "Caused by:"):
        if marker in text:
            text = text.rsplit(marker, 1)[1]  # the deepest cause is the last one
            break
    else:
        if ": java." in text:  # "An error occurred while calling ...: java.lang.X: message"
            text = "java." + text.split(": java.", 1)[1]
    text = _JAVA_FRAME.split(text.strip(), 1)[0]
    return " ".join(text.split())[:800] or type(exc).__name__
