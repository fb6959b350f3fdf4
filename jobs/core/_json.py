"""JSON encode/decode: orjson when present (it is, in `.venv/jobs`), the standard library otherwise.

`dumps` returns bytes without a trailing newline; `loads` accepts bytes or str.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

JSONDecodeError: type[Exception]

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    loads: Callable[[bytes | str], Any] = orjson.loads
    JSONDecodeError = orjson.JSONDecodeError
    HAVE_ORJSON = True
except ImportError:  # pragma: no cover - orjson ships with apache-beam in .venv/jobs

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")

    loads = json.loads
    JSONDecodeError = ValueError
    HAVE_ORJSON = False
