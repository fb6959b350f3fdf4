"""What the join core needs to know about its tasks: plain frozen values, no config machinery.

The deployable's config (``jobs.config.JoinConfig``, pydantic + YAML) validates and is converted to a
:class:`JoinSpec` with :meth:`JoinSpec.of`; the core never imports it (docs/architecture.md).
Defaults are those of docs/join.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DEFAULT_WINDOW_MS = 10 * MINUTE_MS  # W
DEFAULT_HORIZON_MS = 24 * HOUR_MS  # H
DEFAULT_SNAPSHOT_WAIT_MS = 30_000  # S
DEFAULT_OUT_OF_ORDERNESS_MS = 5_000
DEFAULT_IDLENESS_MS = 30_000
# Caps on one request's state, so that a flood on one request_id cannot grow it without bound.
DEFAULT_MAX_IMPRESSIONS_PER_REQUEST = 1_000
DEFAULT_MAX_BUFFERED_LABELS_PER_REQUEST = 1_000


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    label_type: str
    window: int = DEFAULT_WINDOW_MS
    horizon: int = DEFAULT_HORIZON_MS
    snapshot_wait: int = DEFAULT_SNAPSHOT_WAIT_MS


@dataclass(frozen=True, slots=True)
class JoinSpec:
    tasks: tuple[TaskSpec, ...] = (TaskSpec("click", "click"),)
    out_of_orderness: int = DEFAULT_OUT_OF_ORDERNESS_MS
    idleness: int = DEFAULT_IDLENESS_MS
    max_impressions_per_request: int = DEFAULT_MAX_IMPRESSIONS_PER_REQUEST
    max_buffered_labels_per_request: int = DEFAULT_MAX_BUFFERED_LABELS_PER_REQUEST

    @classmethod
    def of(cls, config: Any) -> JoinSpec:
        """A spec from anything shaped like it (a validated config object, or a spec)."""
        if isinstance(config, JoinSpec):
            return config
        return cls(
            tuple(TaskSpec(t.name, t.label_type or t.name, t.window, t.horizon, t.snapshot_wait) for t in config.tasks),
            config.out_of_orderness,
            config.idleness,
            getattr(config, "max_impressions_per_request", DEFAULT_MAX_IMPRESSIONS_PER_REQUEST),
            getattr(config, "max_buffered_labels_per_request", DEFAULT_MAX_BUFFERED_LABELS_PER_REQUEST),
        )
