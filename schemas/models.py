"""Pydantic models of the five JSON forms of docs/wire-format.md (without the events' "type" field).

Each model has exactly the fields of its .avsc record, in the same order, with the same defaults;
tests/schemas derive the Avro type of every field from these annotations and compare it with the
.avsc, so the two cannot drift apart silently. Field types map to Avro as follows:

    str -> string; bool -> boolean; float -> double (finite only: JSON has no NaN/inf);
    int with bounds inside int32 -> int; int with bounds inside int64 -> long;
    dict[str, str] / dict[str, float] -> map<string> / map<double>;
    Literal["A", "B"] -> enum with those symbols, in order; X | None -> ["null", X].

Validation is strict (no "1" for 1, no true for 1, no 1.5 for an int; an int is accepted for a
float) and rejects unknown fields. Besides types, a Sample must be self-consistent: sample_id is
"{impression_id}:{task}:{attribution}", label is 1 exactly for POSITIVE and LATE_POSITIVE,
label_time_ms and delay_ms are null exactly on NEGATIVE, and delay_ms = label_time_ms - impression_time_ms.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .records import POSITION_MAX, POSITION_MIN

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Position = Annotated[int, Field(ge=POSITION_MIN, le=POSITION_MAX)]  # the value rule of schemas.records
Attribution = Literal["POSITIVE", "NEGATIVE", "LATE_POSITIVE"]
UnmatchedReason = Literal["no_impression", "beyond_horizon", "duplicate"]


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, validate_default=False)

    #: the Avro record name of the model (set on each subclass)
    avro_name: ClassVar[str] = ""

    def to_avro(self) -> dict[str, Any]:
        return self.model_dump()


class Impression(_Record):
    avro_name: ClassVar[str] = "Impression"

    request_id: str
    impression_id: str
    user_id: str
    item_id: str
    event_time_ms: Int64
    position: Position = 0
    context: dict[str, str] = Field(default_factory=dict)


class FeatureSnapshot(_Record):
    avro_name: ClassVar[str] = "FeatureSnapshot"

    request_id: str
    event_time_ms: Int64
    sparse: dict[str, str] = Field(default_factory=dict)
    dense: dict[str, float] = Field(default_factory=dict)


class Label(_Record):
    avro_name: ClassVar[str] = "Label"

    request_id: str
    impression_id: str
    label_type: str
    event_time_ms: Int64
    value: float = 1.0


class Sample(_Record):
    avro_name: ClassVar[str] = "Sample"

    sample_id: str
    task: str
    request_id: str
    impression_id: str
    user_id: str
    item_id: str
    position: Position
    context: dict[str, str]
    impression_time_ms: Int64
    label: Annotated[int, Field(ge=0, le=1)]
    attribution: Attribution
    label_time_ms: Int64 | None = None
    delay_ms: Int64 | None = None
    emit_time_ms: Int64
    sparse: dict[str, str]
    dense: dict[str, float]
    has_snapshot: bool

    @model_validator(mode="after")
    def _consistent(self) -> Sample:
        expected_id = f"{self.impression_id}:{self.task}:{self.attribution}"
        if self.sample_id != expected_id:
            raise ValueError(f"sample_id must be {expected_id!r}, got {self.sample_id!r}")
        negative = self.attribution == "NEGATIVE"
        if self.label != (0 if negative else 1):
            raise ValueError(f"label must be {0 if negative else 1} on {self.attribution}, got {self.label}")
        if negative:
            if self.label_time_ms is not None or self.delay_ms is not None:
                raise ValueError(
                    f"label_time_ms and delay_ms must be null on NEGATIVE, got {self.label_time_ms} and "
                    f"{self.delay_ms}"
                )
        else:
            if self.label_time_ms is None or self.delay_ms is None:
                raise ValueError(
                    f"label_time_ms and delay_ms are required on {self.attribution}, got {self.label_time_ms} "
                    f"and {self.delay_ms}"
                )
            if self.delay_ms != self.label_time_ms - self.impression_time_ms:
                raise ValueError(
                    f"delay_ms must be label_time_ms - impression_time_ms = "
                    f"{self.label_time_ms - self.impression_time_ms}, got {self.delay_ms}"
                )
        return self


class UnmatchedLabel(_Record):
    avro_name: ClassVar[str] = "UnmatchedLabel"

    request_id: str
    impression_id: str
    label_type: str
    event_time_ms: Int64
    value: float = 1.0
    reason: UnmatchedReason


MODELS: dict[str, type[_Record]] = {
    m.avro_name: m for m in (Impression, FeatureSnapshot, Label, Sample, UnmatchedLabel)
}
