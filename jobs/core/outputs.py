"""What the join emits, in the form the schemas define: samples and unmatched labels, and the
:class:`Step` one call into the core returns (docs/join.md, docs/wire-format.md).

Field lists and enum symbols come from :mod:`schemas.records`; the checks below fail at import when
a hand-typed form and its schema disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core._codegen import dict_former
from jobs.core.events import Label, label_to_json
from jobs.core.state import RequestState
from schemas import records

POSITIVE = "POSITIVE"
NEGATIVE = "NEGATIVE"
LATE_POSITIVE = "LATE_POSITIVE"
ATTRIBUTIONS = records.ATTRIBUTIONS  # in schema order
records.check_symbols("Sample", "attribution", (POSITIVE, NEGATIVE, LATE_POSITIVE), "jobs.core.outputs")

NO_IMPRESSION = "no_impression"
BEYOND_HORIZON = "beyond_horizon"
DUPLICATE = "duplicate"
UNMATCHED_REASONS = records.UNMATCHED_REASONS  # in schema order
records.check_symbols("UnmatchedLabel", "reason", (NO_IMPRESSION, BEYOND_HORIZON, DUPLICATE), "jobs.core.outputs")


@dataclass(slots=True)
class Sample:
    """One training sample (docs/wire-format.md): the join core's slotted view of the schema's Sample
    record, every field in schema order (checked below); :meth:`to_json` gives its JSON form, and
    ``schemas.serde`` writes it to Kafka from its attributes."""

    sample_id: str
    task: str
    request_id: str
    impression_id: str
    user_id: str
    item_id: str
    position: int
    context: dict[str, str]
    impression_time_ms: int
    label: int
    attribution: str
    label_time_ms: int | None
    delay_ms: int | None
    emit_time_ms: int
    sparse: dict[str, str]
    dense: dict[str, float]
    has_snapshot: bool

    def to_json(self) -> dict[str, Any]:
        return _sample_json(self)


records.check_fields("Sample", Sample.__dataclass_fields__, "jobs.core.outputs.Sample")
_sample_json = dict_former(records.SAMPLE_FIELDS)


@dataclass(slots=True)
class UnmatchedLabel:
    """A label that produced no sample; :meth:`to_json` gives the label's fields plus ``reason``."""

    label: Label
    reason: str
    task: str  # the task that reported it (not part of the JSON form)

    @property
    def request_id(self) -> str:
        return self.label.request_id

    @property
    def impression_id(self) -> str:
        return self.label.impression_id

    def to_json(self) -> dict[str, Any]:
        out = label_to_json(self.label)
        out["reason"] = self.reason
        return out


# An unmatched record is the label's fields plus the reason (docs/wire-format.md).
records.check_fields("UnmatchedLabel", (*records.LABEL_FIELDS, "reason"), "jobs.core.outputs.UnmatchedLabel")


@dataclass(slots=True)
class Step:
    """What one call produced. ``state`` None means: clear the key's state."""

    state: RequestState | None
    timers: list[int]
    samples: list[Sample]
    unmatched: list[UnmatchedLabel]
    ignored_label_types: list[str]
