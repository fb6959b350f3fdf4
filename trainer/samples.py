"""Reading samples from JSON-lines files, Avro object-container files and Kafka messages.

The ``Sample`` record has one definition, in the ``schemas`` package: Avro containers are read with
its reader schema (older writer versions resolved), Kafka values are decoded and held to its contract
by the serde both deployables use (:func:`schemas.serde.decode_valid`, through :func:`decode_sample`),
and every record, whatever its source, is normalised by the one function :func:`parse_sample` (or,
known to follow the contract, taken as it is). The trainer's :class:`Sample` is a view of the record:
the fields it reads, checked against the schema at import (each other field is named as left out), and
:class:`SampleTable` is that view as columns. Files may also hold evaluation samples that carry only
some fields (labels that are true labels, say); those are checked field by field. A record that is not
a usable sample is skipped with its reason (and written to a dead-letter file when one is given); a
file that cannot be read, or holds no usable sample at all, is an :class:`InputError`. Repeated
``sample_id``s (a replay's at-least-once output) are dropped: the first one wins.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from schemas import Codec, DecodeError, InvalidRecord, records
from schemas.records import POSITION_MAX, POSITION_MIN
from schemas.serde import decode_valid
from trainer.errors import InputError

if TYPE_CHECKING:
    from schemas.confluent import ConfluentCodec

log = logging.getLogger("trainer")

#: Sample.attribution as the trainer holds it: the symbol's index in the schema's enum (what Avro writes)
ATTRIBUTIONS: dict[str, int] = {symbol: code for code, symbol in enumerate(records.ATTRIBUTIONS)}
POSITIVE, NEGATIVE, LATE_POSITIVE = ATTRIBUTIONS["POSITIVE"], ATTRIBUTIONS["NEGATIVE"], ATTRIBUTIONS["LATE_POSITIVE"]
AVRO_MAGIC = b"Obj\x01"

# The fields of the view, by what the table makes of them.
ID_FIELDS = ("sample_id", "impression_id")  # deduplication, and evidence keyed by impression
CATEGORICAL_FIELDS = ("user_id", "item_id", "position")  # categorical columns (position as its string)
MAP_GROUPS = ("context", "sparse", "dense")  # one column per key: context.*, sparse.* categorical, dense.* numbers
TARGET_FIELDS = ("label", "attribution")
TIME_FIELDS = ("impression_time_ms", "emit_time_ms", "delay_ms")  # -1 where a record lacks one
#: the Sample fields the trainer does not read
LEFT_OUT = ("task", "request_id", "label_time_ms", "has_snapshot")


class BadRecord(ValueError):
    """One record is not a usable sample; the message says which field and what was received."""


@dataclass(slots=True)
class Sample:
    """The parts of a sample the trainer uses, normalised: a view of the schema's Sample record."""

    sample_id: str | None
    impression_id: str | None
    user_id: str
    item_id: str
    position: int
    context: dict[str, str]
    sparse: dict[str, str]
    dense: dict[str, float]
    label: int
    attribution: int
    # Event times (ms) the delayed-feedback correction reads; None when the record lacks them.
    impression_time_ms: int | None = None
    emit_time_ms: int | None = None
    delay_ms: int | None = None


VIEW_FIELDS = tuple(f.name for f in dataclasses.fields(Sample))
records.check_view("Sample", VIEW_FIELDS, "trainer.samples.Sample", leaves_out=LEFT_OUT)
records.check_view(
    "Sample", (*ID_FIELDS, *CATEGORICAL_FIELDS, *MAP_GROUPS, *TARGET_FIELDS, *TIME_FIELDS), "trainer.samples' table",
    leaves_out=LEFT_OUT,
)


def _time(record: dict[str, Any], name: str) -> int | None:
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRecord(f"field {name!r} must be a time in ms, got {value!r:.40}")
    return int(value)


def _text(record: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = record.get(name)
    if value is None:
        if required:
            raise BadRecord(f"missing field {name!r}")
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise BadRecord(f"field {name!r} must be a string, got {type(value).__name__} {value!r:.40}")


def _string_map(record: dict[str, Any], name: str) -> dict[str, str]:
    value = record.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRecord(f"field {name!r} must be an object of strings, got {type(value).__name__}")
    out = {}
    for key, item in value.items():
        if isinstance(item, str):
            out[str(key)] = item
        elif isinstance(item, int | float) and not isinstance(item, bool):
            out[str(key)] = str(item)
        else:
            raise BadRecord(f"{name}.{key} must be a string, got {type(item).__name__}")
    return out


def _float_map(record: dict[str, Any], name: str) -> dict[str, float]:
    value = record.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRecord(f"field {name!r} must be an object of numbers, got {type(value).__name__}")
    out = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise BadRecord(f"{name}.{key} must be a finite number, got {item!r:.40}")
        out[str(key)] = float(item)
    return out


def parse_sample(record: Any) -> Sample:
    """Validate and normalise one decoded record; raises :class:`BadRecord` with the reason."""
    if not isinstance(record, dict):
        raise BadRecord(f"expected a JSON object, got {type(record).__name__}")
    label = record.get("label")
    if isinstance(label, bool):
        label = int(label)
    if label not in (0, 1):  # 0, 1, 0.0 and 1.0
        raise BadRecord(f"field 'label' must be 0 or 1, got {label!r:.40}")
    attribution_name = record.get("attribution")
    if attribution_name is None:
        attribution = POSITIVE if label else NEGATIVE
    elif isinstance(attribution_name, str) and attribution_name in ATTRIBUTIONS:
        attribution = ATTRIBUTIONS[attribution_name]
    else:
        raise BadRecord(f"field 'attribution' must be one of {sorted(ATTRIBUTIONS)}, got {attribution_name!r:.40}")
    position = record.get("position", 0)
    if position is None:
        position = 0
    if isinstance(position, bool) or not isinstance(position, int):
        raise BadRecord(f"field 'position' must be an integer, got {position!r:.40}")
    if not POSITION_MIN <= position <= POSITION_MAX:  # the bound of the join and of the Sample contract
        raise BadRecord(f"field 'position' must be a slot from {POSITION_MIN} to {POSITION_MAX}, got {position!r:.40}")
    impression_id = _text(record, "impression_id", required=False)
    sample_id = _text(record, "sample_id", required=False)
    if sample_id is None and impression_id is not None:
        sample_id = f"{impression_id}:{record.get('task', '')}:{attribution_name or ''}"
    return Sample(
        sample_id=sample_id,
        impression_id=impression_id,
        user_id=_text(record, "user_id") or "",
        item_id=_text(record, "item_id") or "",
        position=position,
        context=_string_map(record, "context"),
        sparse=_string_map(record, "sparse"),
        dense=_float_map(record, "dense"),
        label=int(label),
        attribution=attribution,
        impression_time_ms=_time(record, "impression_time_ms"),
        emit_time_ms=_time(record, "emit_time_ms"),
        delay_ms=_time(record, "delay_ms"),
    )


def _view_former() -> Callable[[dict[str, Any]], Sample]:
    """A decoded record known to follow the Sample contract -> its view: :func:`parse_sample`'s result
    with nothing left to check or convert (tests hold the two equal). Generated once from the view's
    fields; a field the schema gives a default is read with ``get`` (absent under a codec whose
    schema lacks it)."""
    optional = records.DEFAULTS["Sample"]
    values = []
    for name in VIEW_FIELDS:
        value = f"r.get({name!r})" if name in optional else f"r[{name!r}]"
        values.append(f"codes[{value}]" if name == "attribution" else value)
    scope: dict[str, Any] = {"Sample": Sample, "codes": ATTRIBUTIONS}
    exec(f"def view(r):\n    return Sample({', '.join(values)})\n", scope)
    return scope["view"]  # type: ignore[no-any-return]


_contract_sample = _view_former()


def decode_sample(data: bytes | None, codec: Codec | ConfluentCodec | None = None) -> Sample:
    """A Kafka message value (Avro single-object encoding; or, with a ConfluentCodec, the Confluent
    framing too) -> a sample; :class:`BadRecord` with the reason for an undecodable value (an unknown
    schema id, a registry that does not answer) or a record that breaks the Sample contract."""
    try:
        return _contract_sample(decode_valid(data, "Sample", codec))
    except (DecodeError, InvalidRecord) as exc:
        raise BadRecord(str(exc)) from exc


def _records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(record number, decoded record or None, decode error) for every record of ``path``."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"cannot read samples file {path}: {exc.strerror or exc}") from exc
    with fh:
        try:
            head = fh.read(4)
        except OSError as exc:
            raise InputError(f"cannot read samples file {path}: {exc.strerror or exc}") from exc
        fh.seek(0)
        if head == AVRO_MAGIC:
            import fastavro

            try:
                reader = fastavro.reader(fh, reader_schema=Codec.default().schema("Sample"))
                for number, record in enumerate(reader, start=1):
                    yield number, record, None
            except Exception as exc:  # fastavro raises many types on a corrupt container
                raise InputError(f"samples file {path} is not a readable Avro container: {exc}") from exc
            return
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                yield number, json.loads(line), None
            except (UnicodeDecodeError, ValueError) as exc:
                yield number, None, f"not a JSON object: {str(exc)[:80]}"


@dataclass
class ReadStats:
    records: int = 0
    bad: int = 0
    duplicates: int = 0
    first_problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, int]:
        return {"records": self.records, "bad_records": self.bad, "duplicate_sample_ids": self.duplicates}


def read_samples(
    paths: Sequence[str | os.PathLike[str]],
    deadletter: str | os.PathLike[str] | None = None,
    dedup: bool = True,
) -> tuple[list[Sample], ReadStats]:
    """Read every file in order; returns the usable, deduplicated samples and what was skipped."""
    if not paths:
        raise InputError("no samples file given")
    stats = ReadStats()
    samples: list[Sample] = []
    seen: set[str] = set()
    dead: TextIO | None = None
    try:
        if deadletter is not None:
            try:
                dead = open(deadletter, "w", encoding="utf-8")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise InputError(f"cannot write dead-letter file {deadletter}: {exc.strerror or exc}") from exc
        for raw_path in paths:
            path = Path(raw_path)
            if path.is_dir():
                raise InputError(f"samples file {path} is a directory")
            good = bad = 0
            file_first = ""
            for number, record, error in _records(path):
                stats.records += 1
                sample = None
                if error is None:
                    try:
                        sample = parse_sample(record)
                    except BadRecord as exc:
                        error = str(exc)
                if sample is None:
                    bad += 1
                    stats.bad += 1
                    reason = f"{path}:{number}: {error}"
                    file_first = file_first or reason
                    if len(stats.first_problems) < 3:
                        stats.first_problems.append(reason)
                    if dead is not None:
                        dead.write(json.dumps({"file": str(path), "record": number, "reason": error}) + "\n")
                    continue
                good += 1
                if dedup and sample.sample_id is not None:
                    if sample.sample_id in seen:
                        stats.duplicates += 1
                        continue
                    seen.add(sample.sample_id)
                samples.append(sample)
            if good == 0:
                if bad:
                    raise InputError(
                        f"samples file {path} holds no usable sample ({bad} bad records; first: {file_first})"
                    )
                raise InputError(f"samples file {path} holds no samples")
    finally:
        if dead is not None:
            dead.close()
    if stats.bad:
        log.warning(
            "skipped %d bad records (first: %s)%s",
            stats.bad,
            "; ".join(stats.first_problems),
            f", all written to {deadletter}" if deadletter else "",
        )
    if stats.duplicates:
        log.info("dropped %d repeated sample_ids", stats.duplicates)
    return samples, stats


class SampleTable:
    """Samples as columns; every column is built on first use and cached (the sidecar's poller
    prepares feature columns only, and never pays for labels or times)."""

    def __init__(self, samples: Sequence[Sample]):
        self.samples = list(samples)
        self.size = len(self.samples)
        self._columns: dict[str, np.ndarray] = {}

    @functools.cached_property
    def labels(self) -> np.ndarray:
        return np.fromiter((s.label for s in self.samples), np.float32, self.size)

    @functools.cached_property
    def attributions(self) -> np.ndarray:
        return np.fromiter((s.attribution for s in self.samples), np.int32, self.size)

    @functools.cached_property
    def times(self) -> dict[str, np.ndarray]:
        """Event times in ms, -1 where a sample lacks one (see :data:`TIME_FIELDS`)."""
        return {
            name: np.fromiter((_or_missing(getattr(s, name)) for s in self.samples), np.int64, self.size)
            for name in TIME_FIELDS
        }

    def __len__(self) -> int:
        return self.size

    def categorical_fields(self) -> list[str]:
        """user_id, item_id, position, then every context.* and sparse.* key found, sorted."""
        keys: dict[str, set[str]] = {"context": set(), "sparse": set()}
        for s in self.samples:
            keys["context"].update(s.context)
            keys["sparse"].update(s.sparse)
        return (
            list(CATEGORICAL_FIELDS)
            + [f"context.{k}" for k in sorted(keys["context"])]
            + [f"sparse.{k}" for k in sorted(keys["sparse"])]
        )

    def dense_fields(self) -> list[str]:
        keys: set[str] = set()
        for s in self.samples:
            keys.update(s.dense)
        return [f"dense.{k}" for k in sorted(keys)]

    def column(self, name: str) -> np.ndarray:
        """A feature column: strings (object array) for categorical fields, float32 for dense ones."""
        cached = self._columns.get(name)
        if cached is not None:
            return cached
        column = np.asarray(_column_values(self.samples, name), dtype=np.float32 if is_dense(name) else object)
        self._columns[name] = column
        return column


MISSING_TIME = -1


def _or_missing(value: int | None) -> int:
    return MISSING_TIME if value is None else value


def is_dense(name: str) -> bool:
    return name.startswith("dense.")


def _column_values(samples: Iterable[Sample], name: str) -> list[Any]:
    if name in ("user_id", "item_id"):
        return [getattr(s, name) for s in samples]
    if name == "position":
        return [str(s.position) for s in samples]
    group, _, key = name.partition(".")
    if group == "context":
        return [s.context.get(key, "") for s in samples]
    if group == "sparse":
        return [s.sparse.get(key, "") for s in samples]
    if group == "dense":
        return [s.dense.get(key, 0.0) for s in samples]
    raise ValueError(f"unknown feature field {name!r}")
