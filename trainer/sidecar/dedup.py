"""``sample_id`` dedup over the attribution horizon, in bounded memory, saved with each checkpoint.

The join delivers at least once: a restarted join (or a replay) emits samples again with the same
``sample_id``. A sample whose id was trained within the horizon (event time: the samples' own
``emit_time_ms``, so no wall clock is involved) is dropped. Ids older than the horizon are forgotten;
beyond ``max_entries`` the oldest ones are forgotten first (and counted).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import orjson

from common.output import AtomicFile


class Dedup:
    def __init__(self, horizon_ms: int, max_entries: int):
        self.horizon_ms = horizon_ms
        self.max_entries = max_entries
        self._seen: OrderedDict[str, int] = OrderedDict()  # sample_id -> emit time, oldest first
        self.latest_ms = 0  # the largest emit time seen
        self.forgotten_early = 0  # ids dropped by the size bound before their horizon passed

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._seen

    def seen(self, sample_id: str, emit_time_ms: int | None) -> bool:
        """True if ``sample_id`` is a repeat; otherwise remember it and return False."""
        if sample_id in self._seen:
            return True
        t = self.latest_ms if emit_time_ms is None else emit_time_ms
        self._seen[sample_id] = t
        if t > self.latest_ms:
            self.latest_ms = t
            self._expire()
        if len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
            self.forgotten_early += 1
        return False

    def forget(self, sample_id: str) -> None:
        """Undo :meth:`seen` for a sample that was not trained after all."""
        self._seen.pop(sample_id, None)

    def _expire(self) -> None:
        cutoff = self.latest_ms - self.horizon_ms
        seen = self._seen
        while seen:
            oldest = next(iter(seen.values()))
            if oldest >= cutoff:
                return
            seen.popitem(last=False)

    def save(self, path: Path) -> None:
        with AtomicFile(path) as out:
            out.write(orjson.dumps({"latest_ms": self.latest_ms, "ids": list(self._seen.items())}))
            out.commit()

    @classmethod
    def load(cls, path: Path, horizon_ms: int, max_entries: int) -> Dedup:
        data = orjson.loads(path.read_bytes())
        dedup = cls(horizon_ms, max_entries)
        dedup.latest_ms = int(data["latest_ms"])
        dedup._seen = OrderedDict((str(k), int(t)) for k, t in data["ids"])
        dedup._expire()
        while len(dedup._seen) > max_entries:
            dedup._seen.popitem(last=False)
        return dedup
