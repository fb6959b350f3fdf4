"""Builders and a reference runtime for the join-core tests (imported as tests.jobs.core.helpers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.config import JoinConfig, TaskConfig
from jobs.core import Event, FeatureSnapshot, Impression, Label, SampleJoin
from jobs.core.local import LocalJoinRunner
from jobs.runtime.state_bytes import BytesStore

T0 = 1_700_000_000_000
SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
W, H, S, OOO = 10 * MIN, 24 * HOUR, 30 * SEC, 5 * SEC  # the defaults


def imp(rid: str, iid: str, t: int, user: str = "u1", item: str = "v1", position: int = 0,
        context: dict[str, str] | None = None) -> Impression:
    return Impression(rid, iid, user, item, t, position, {"page": "feed"} if context is None else context)


def snap(rid: str, t: int, sparse: dict[str, str] | None = None, dense: dict[str, float] | None = None
         ) -> FeatureSnapshot:
    return FeatureSnapshot(rid, t, {"city": "bj"} if sparse is None else sparse,
                           {"u_ctr_7d": 0.031} if dense is None else dense)


def lab(rid: str, iid: str, t: int, label_type: str = "click", value: float = 1.0) -> Label:
    return Label(rid, iid, label_type, t, value)


def join_config(*tasks: TaskConfig, out_of_orderness: int = OOO) -> JoinConfig:
    return JoinConfig(tasks=tasks or (TaskConfig(name="click"),), out_of_orderness=out_of_orderness)


@dataclass
class Result:
    samples: list[dict[str, Any]]
    unmatched: list[dict[str, Any]]
    ignored: Counter[str]
    runner: LocalJoinRunner
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {s["sample_id"]: s for s in self.samples}

    def ids(self) -> set[str]:
        return set(self.by_id)

    def reasons(self) -> list[tuple[str, str]]:
        return sorted((u["impression_id"], u["reason"]) for u in self.unmatched)


def replay(events: Iterable[Event], config: JoinConfig | None = None, *, state_bytes: bool = True,
           finish: bool = True) -> Result:
    """Feed ``events`` in order through the in-memory runtime (state serialized at every step)."""
    runner = LocalJoinRunner(SampleJoin(config or join_config()), store=BytesStore() if state_bytes else None)
    for e in events:
        runner.process(e)
    if finish:
        runner.finish()
    return Result([s.to_json() for s in runner.samples], [u.to_json() for u in runner.unmatched],
                  runner.ignored_label_types, runner)


def drain(runner: LocalJoinRunner) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    samples, unmatched = runner.drain()
    return [s.to_json() for s in samples], [u.to_json() for u in unmatched]


def canonical(records: Sequence[dict[str, Any]]) -> Counter[str]:
    import json

    return Counter(json.dumps(r, sort_keys=True) for r in records)
