"""The sample-join core: pure Python, no Flink, Kafka or Redis import (docs/architecture.md, docs/join.md).

Both runtimes (the PyFlink KeyedProcessFunction and the embedded Kafka + Redis runtime) own the keyed
state and the event-time timers and delegate each event and each timer to :class:`SampleJoin`.
"""

from jobs.core.events import (
    BadEvent,
    Event,
    FeatureSnapshot,
    Impression,
    Label,
    event_from_json,
    event_to_json,
    label_to_json,
)
from jobs.core.join import (
    ATTRIBUTIONS,
    BEYOND_HORIZON,
    DUPLICATE,
    LATE_POSITIVE,
    NEGATIVE,
    NO_IMPRESSION,
    POSITIVE,
    UNMATCHED_REASONS,
    Sample,
    SampleJoin,
    Step,
    UnmatchedLabel,
)
from jobs.core.state import WATERMARK_END, WATERMARK_START, RequestState, StateError

__all__ = [
    "ATTRIBUTIONS",
    "BEYOND_HORIZON",
    "DUPLICATE",
    "LATE_POSITIVE",
    "NEGATIVE",
    "NO_IMPRESSION",
    "POSITIVE",
    "UNMATCHED_REASONS",
    "WATERMARK_END",
    "WATERMARK_START",
    "BadEvent",
    "Event",
    "FeatureSnapshot",
    "Impression",
    "Label",
    "RequestState",
    "Sample",
    "SampleJoin",
    "StateError",
    "Step",
    "UnmatchedLabel",
    "event_from_json",
    "event_to_json",
    "label_to_json",
]
