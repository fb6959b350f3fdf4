"""Hypothesis strategies of the JSON forms of docs/wire-format.md, shared by the schemas tests.

(Imported as tests.schemas.schema_strategies: setup.cfg puts the repository root on the path.)
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

LONGS = st.integers(-(2**63), 2**63 - 1)
TIMES = st.integers(0, 2**62)  # keeps label time - impression time inside a long
TEXT = st.text(max_size=12)
IDS = st.text(min_size=1, max_size=12)
DOUBLES = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
STR_MAPS = st.dictionaries(TEXT, TEXT, max_size=4)
DOUBLE_MAPS = st.dictionaries(TEXT, DOUBLES, max_size=4)
POSITIONS = st.integers(0, 2**31 - 1)

JSON_FORMS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "Impression": st.fixed_dictionaries(
        {"request_id": IDS, "impression_id": IDS, "user_id": TEXT, "item_id": TEXT, "event_time_ms": LONGS},
        optional={"position": POSITIONS, "context": STR_MAPS},
    ),
    "FeatureSnapshot": st.fixed_dictionaries(
        {"request_id": IDS, "event_time_ms": LONGS}, optional={"sparse": STR_MAPS, "dense": DOUBLE_MAPS}
    ),
    "Label": st.fixed_dictionaries(
        {"request_id": IDS, "impression_id": IDS, "label_type": TEXT, "event_time_ms": LONGS},
        optional={"value": DOUBLES},
    ),
    "UnmatchedLabel": st.fixed_dictionaries(
        {"request_id": IDS, "impression_id": IDS, "label_type": TEXT, "event_time_ms": LONGS,
         "reason": st.sampled_from(["no_impression", "beyond_horizon", "duplicate"])},
        optional={"value": DOUBLES},
    ),
}


@st.composite
def samples(draw: st.DrawFn) -> dict[str, Any]:
    attribution = draw(st.sampled_from(["POSITIVE", "NEGATIVE", "LATE_POSITIVE"]))
    impression_id, task, t_i = draw(IDS), draw(IDS), draw(TIMES)
    negative = attribution == "NEGATIVE"
    label_time = None if negative else draw(TIMES)
    return {
        "sample_id": f"{impression_id}:{task}:{attribution}",
        "task": task,
        "request_id": draw(IDS),
        "impression_id": impression_id,
        "user_id": draw(TEXT),
        "item_id": draw(TEXT),
        "position": draw(POSITIONS),
        "context": draw(STR_MAPS),
        "impression_time_ms": t_i,
        "label": 0 if negative else 1,
        "attribution": attribution,
        "label_time_ms": label_time,
        "delay_ms": None if label_time is None else label_time - t_i,
        "emit_time_ms": draw(LONGS),
        "sparse": draw(STR_MAPS),
        "dense": draw(DOUBLE_MAPS),
        "has_snapshot": draw(st.booleans()),
    }


JSON_FORMS["Sample"] = samples()
DEFAULTS = {
    "Impression": {"position": 0, "context": {}},
    "FeatureSnapshot": {"sparse": {}, "dense": {}},
    "Label": {"value": 1.0},
    "UnmatchedLabel": {"value": 1.0},
    "Sample": {},
}


_AVRO_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(), "boolean": st.booleans(), "int": st.integers(-(2**31), 2**31 - 1), "long": LONGS,
    "float": st.floats(width=32), "double": st.floats(), "string": st.text(max_size=8), "bytes": st.binary(max_size=8),
}


def avro_values(t: Any, named: dict[str, Any] | None = None, namespace: str = "") -> st.SearchStrategy[Any]:
    """Any value of Avro type `t` (the JSON of a schema), as fastavro writes and reads it: NaN, negative
    ints, any enum symbol... whatever the pydantic models would say of it."""
    named = {} if named is None else named
    if isinstance(t, str):
        if t in _AVRO_PRIMITIVES:
            return _AVRO_PRIMITIVES[t]
        return named[t] if t in named else named[f"{namespace}.{t}"]
    if isinstance(t, list):
        return st.one_of(*(avro_values(branch, named, namespace) for branch in t))
    kind = t["type"]
    if kind in _AVRO_PRIMITIVES:
        return _AVRO_PRIMITIVES[kind]
    if kind == "map":
        return st.dictionaries(st.text(max_size=6), avro_values(t["values"], named, namespace), max_size=3)
    if kind == "array":
        return st.lists(avro_values(t["items"], named, namespace), max_size=3)
    name = t["name"] if "." in t["name"] else ".".join(filter(None, [t.get("namespace", namespace), t["name"]]))
    if kind == "enum":
        named[name] = st.sampled_from(t["symbols"])
    else:  # a record
        inner = name.rpartition(".")[0]
        named[name] = st.fixed_dictionaries({f["name"]: avro_values(f["type"], named, inner) for f in t["fields"]})
    return named[name]


def mutate(data: bytes, at: int, noise: bytes, how: str) -> bytes:
    """`data` cut at `at`, with the byte there flipped by `noise`, or with `noise` inserted there."""
    if how == "cut":
        return data[:at]
    if how == "flip":
        return data[:at] + bytes([data[at] ^ (noise[0] or 1)]) + data[at + 1:]
    return data[:at] + noise + data[at:]


MUTATIONS = st.sampled_from(["cut", "flip", "insert"])
