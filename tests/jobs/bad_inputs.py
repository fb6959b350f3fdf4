"""A catalogue of hostile and broken inputs, shared by the fuzz and dead-letter tests.

Each entry is ``(name, bytes)``: event JSON lines for ``replay`` and Avro messages for the event topics.
Every one of them must end in the dead letter with a reason; the good records around them must be
joined as if they were not there. Regression cases of bugs found by fuzzing are marked.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.codec import Codec

T0 = 1_700_000_000_000
YEAR_10000_MS = 253_402_300_800_000

IMPRESSION: dict[str, Any] = {
    "type": "impression", "request_id": "rb", "impression_id": "ib", "user_id": "u", "item_id": "v",
    "event_time_ms": T0, "position": 0, "context": {"page": "feed"},
}
SNAPSHOT: dict[str, Any] = {
    "type": "feature_snapshot", "request_id": "rb", "event_time_ms": T0, "sparse": {"c": "x"}, "dense": {"d": 0.5},
}
LABEL: dict[str, Any] = {
    "type": "label", "request_id": "rb", "impression_id": "ib", "label_type": "click", "event_time_ms": T0 + 1_000,
    "value": 1.0,
}


def _line(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def bad_json_lines() -> list[tuple[str, bytes]]:
    """Lines of an events file that are not valid events."""
    out: list[tuple[str, bytes]] = [
        ("truncated object", _line(IMPRESSION)[:-7]),
        ("invalid utf-8", b'{"type":"label","request_id":"\xff\xfe"}'),
        ("bom mid-file", b"\xef\xbb\xbf" + _line(IMPRESSION)),
        ("nul bytes", b"\x00\x00\x00"),
        ("utf-16", _line(LABEL).decode().encode("utf-16")),
        ("a list", b"[1, 2, 3]"),
        ("a bare string", b'"impression"'),
        ("NaN literal", _line(LABEL).replace(b"1.0", b"NaN")),
        ("Infinity literal", _line(LABEL).replace(b"1.0", b"Infinity")),
        ("overflowing float", _line(LABEL).replace(b"1.0", b"1e999")),
        ("lone surrogate", _line({**LABEL, "request_id": "x"}).replace(b'"x"', b'"\\ud800"')),
        ("deep nesting", b"[" * 5000 + b"]" * 5000),
        ("no type", _line({k: v for k, v in LABEL.items() if k != "type"})),
        ("unknown type", _line({**LABEL, "type": "purchase"})),
        ("unhashable type", _line({**LABEL, "type": ["label"]})),
        ("missing request_id", _line({k: v for k, v in IMPRESSION.items() if k != "request_id"})),
        ("empty impression_id", _line({**IMPRESSION, "impression_id": ""})),
        ("int id", _line({**LABEL, "impression_id": 7})),
        ("string time", _line({**IMPRESSION, "event_time_ms": "1700000000000"})),
        ("bool time", _line({**LABEL, "event_time_ms": True})),
        ("fractional time", _line({**LABEL, "event_time_ms": T0 + 0.5})),
        ("negative time", _line({**IMPRESSION, "event_time_ms": -1})),  # regression: was accepted
        ("far-future time", _line({**LABEL, "event_time_ms": YEAR_10000_MS})),  # regression: was accepted
        ("time beyond a long", _line({**LABEL, "event_time_ms": 2**64 + 1})),
        ("position beyond an int", _line({**IMPRESSION, "position": 2**31})),  # regression: was accepted
        ("string position", _line({**IMPRESSION, "position": "3"})),
        ("context of numbers", _line({**IMPRESSION, "context": {"page": 1}})),
        ("context a list", _line({**IMPRESSION, "context": ["feed"]})),
        ("dense of strings", _line({**SNAPSHOT, "dense": {"d": "0.5"}})),
        ("dense overflowing", _line({**SNAPSHOT, "dense": {"d": 1.0}}).replace(b"1.0", b"1e400")),
        ("label value null-like string", _line({**LABEL, "value": "1"})),
        ("huge string id in a list", _line({**LABEL, "request_id": ["x" * 1_000_000]})),
        ("huge map with a bad value",
         _line({**IMPRESSION, "context": {**{f"k{i}": "v" for i in range(50_000)}, "z": 0}})),
    ]
    return out


def bad_messages(codec: Codec | None = None) -> list[tuple[str, bytes]]:
    """Values produced to an event topic that are not valid events."""
    codec = codec or Codec.default()
    imp = codec.encode("Impression", {**IMPRESSION})
    header = imp[:10]
    label_header = codec.encode("Label", {**LABEL})[:10]
    return [
        ("empty", b""),
        ("one byte", b"\xc3"),
        ("header only", header),
        ("truncated body", imp[:-3]),
        ("trailing bytes", imp + b"\x00"),
        ("wrong magic", b"\xc3\x02" + imp[2:]),
        ("json instead of avro", _line(IMPRESSION)),
        ("unknown fingerprint", b"\xc3\x01" + bytes(8) + imp[10:]),
        ("huge string length", header + zigzag(2**62)),
        ("negative string length", header + zigzag(-5)),
        ("overlong varint", header + b"\xff" * 12),
        ("invalid utf-8 in a string", header + zigzag(2) + b"\xff\xfe" + imp[12:]),
        ("negative time", codec.encode("Impression", {**IMPRESSION, "event_time_ms": -5})),
        ("far-future time", codec.encode("Label", {**LABEL, "event_time_ms": 2**62})),
        ("NaN value", codec.encode("Label", {**LABEL, "value": float("nan")})),
        ("infinite dense value", codec.encode("FeatureSnapshot", {**SNAPSHOT, "dense": {"d": float("inf")}})),
        # regression: fastavro reads an Avro int without a range check; such a position was accepted
        ("position beyond an int", header + imp[10:].replace(zigzag(T0) + zigzag(0), zigzag(T0) + zigzag(2**40))),
        ("empty request_id", codec.encode("Label", {**LABEL, "request_id": ""})),
        ("label body under an impression header", header + codec.encode("Label", {**LABEL})[10:]),
        ("impression body under a label header", label_header + imp[10:]),
        ("not an input record", codec.encode("UnmatchedLabel", {**LABEL, "reason": "duplicate"})),
    ]


def zigzag(n: int) -> bytes:
    """An Avro long (zig-zag varint), for hand-made bodies."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)
