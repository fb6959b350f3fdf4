"""Avro schemas of the data loop, their single-object codec, JSON forms and compatibility gate.

    from schemas import Codec, SchemaError, DecodeError
    codec = Codec.default()
    data = codec.encode("Sample", record)
    name, record = codec.decode(data)
    record = codec.decode(data, expected="Label")

The `.avsc` files in this directory are the source of truth; see `python -m schemas --help`.
"""

from .codec import Codec
from .errors import (
    BadBody,
    BadMagic,
    DecodeError,
    EncodeError,
    InvalidRecord,
    ResolutionError,
    SchemaDefinitionError,
    SchemaError,
    TruncatedMessage,
    UnknownFingerprint,
    UnknownRecord,
    WrongRecord,
)

RECORDS = ("Impression", "FeatureSnapshot", "Label", "Sample", "UnmatchedLabel")

__all__ = [
    "RECORDS",
    "BadBody",
    "BadMagic",
    "Codec",
    "DecodeError",
    "EncodeError",
    "InvalidRecord",
    "ResolutionError",
    "SchemaDefinitionError",
    "SchemaError",
    "TruncatedMessage",
    "UnknownFingerprint",
    "UnknownRecord",
    "WrongRecord",
]
