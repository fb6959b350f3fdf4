"""JSON encode/decode on orjson (a declared dependency): fast enough for the join's hot paths.

`dumps` returns bytes without a trailing newline; `loads` accepts bytes or str.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

dumps: Callable[[Any], bytes] = orjson.dumps
loads: Callable[[bytes | str], Any] = orjson.loads
JSONDecodeError: type[Exception] = orjson.JSONDecodeError
