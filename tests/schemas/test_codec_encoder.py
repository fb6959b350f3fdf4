"""Codec.encoder: the bound encoder gives the same bytes as encode, and the same errors."""

from __future__ import annotations

import pytest

from schemas import Codec, EncodeError, UnknownRecord

LABEL = {"request_id": "r1", "impression_id": "i1", "label_type": "click", "event_time_ms": 5, "value": 1.0}


def test_bound_encoder_matches_encode() -> None:
    codec = Codec.default()
    encode = codec.encoder("Label")
    assert encode(LABEL) == codec.encode("Label", LABEL)
    assert codec.decode(encode(LABEL), "Label") == LABEL


def test_bound_encoder_errors() -> None:
    codec = Codec.default()
    with pytest.raises(UnknownRecord):
        codec.encoder("Nope")
    with pytest.raises(EncodeError, match="cannot encode Label"):
        codec.encoder("Label")({**LABEL, "event_time_ms": "soon"})
