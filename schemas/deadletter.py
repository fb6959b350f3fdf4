"""The dead-letter record's headers (docs/wire-format.md), written by every streaming reader of the
project: the join's runtimes and the trainer sidecar. The value is the original bytes, unchanged."""

from __future__ import annotations

HEADERS = ("error", "source_topic", "source_partition", "source_offset")


def deadletter_headers(reason: str, topic: str, partition: int, offset: int) -> dict[str, bytes]:
    """Why the record could not be used, and where it came from."""
    return {
        "error": reason.encode("utf-8", "replace"),
        "source_topic": str(topic).encode("utf-8"),
        "source_partition": str(partition).encode("ascii"),
        "source_offset": str(offset).encode("ascii"),
    }
