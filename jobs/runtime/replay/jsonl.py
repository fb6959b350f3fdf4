"""Events files (JSON lines) for both replay engines: one line -> one event, and the dead-letter line.

A bad line never stops a replay: it goes to the dead-letter file as ``{"line": N, "reason": "...",
"raw": "..."}`` (docs/cli.md), the reason naming what is wrong (see :func:`jobs.core.events.event_from_json`).
"""

from __future__ import annotations

from jobs.core.events import BadEvent, Event, event_from_json
from jobs.runtime import _json

_loads = _json.loads
_DecodeError = _json.JSONDecodeError


def parse_event_line(raw: bytes | str) -> Event | None:
    """The event on one line; None for a blank line. Raises BadEvent with the dead-letter reason."""
    try:
        obj = _loads(raw)
    except _DecodeError as exc:
        if not raw.strip():
            return None
        raise BadEvent(f"not valid JSON: {exc}") from None
    return event_from_json(obj)


def deadletter_line(lineno: int, reason: str, raw: bytes | str) -> bytes:
    """The dead-letter record of input line ``lineno`` (1-based), with its newline."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return _json.dumps({"line": lineno, "reason": reason, "raw": text.rstrip("\r\n")}) + b"\n"
