"""Exceptions of the `schemas` package.

Every error raised on purpose derives from :class:`SchemaError`; messages name what was received
(the record, the field, the fingerprint in hex, the first bytes, lengths), so that a dead-letter
entry or a CI log is enough to find the cause.
"""

from __future__ import annotations


class SchemaError(Exception):
    """Root exception of the `schemas` package."""


class SchemaDefinitionError(SchemaError):
    """An .avsc file, the release manifest or compat.yaml is missing, does not parse or is inconsistent."""


class UnknownRecord(SchemaError, KeyError):
    """A record name that the schema set does not define."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EncodeError(SchemaError, ValueError):
    """A record could not be encoded with its current schema (missing field, wrong type, ...)."""


class InvalidRecord(SchemaError, ValueError):
    """A JSON form or Avro dict failed validation against its pydantic model."""


class DecodeError(SchemaError, ValueError):
    """Bytes that are not a decodable single-object-encoded record; subclasses say why."""


class BadMagic(DecodeError):
    """The message does not start with the single-object marker 0xC3 0x01."""


class TruncatedMessage(DecodeError):
    """The message ends before its header or its body is complete."""


class UnknownFingerprint(DecodeError):
    """The writer-schema fingerprint matches no released or current version of any record."""


class WrongRecord(DecodeError):
    """The message holds another record than the one the caller expected."""


class BadBody(DecodeError):
    """The Avro body is not valid for its writer schema (bad UTF-8, bad enum index, trailing bytes ...)."""


class ResolutionError(DecodeError):
    """The writer version cannot be resolved to the reader's current schema (an incompatible release)."""
