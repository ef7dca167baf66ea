"""Keyset pagination cursors: opaque to clients, stable while rows are inserted between pages."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

import msgspec
from litestar.exceptions import ValidationException

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(tuple[datetime, UUID])


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    return base64.urlsafe_b64encode(_encoder.encode((created_at, row_id))).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (created_at, id) after which the next page starts; 422 naming `cursor` if garbled."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return _decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValidationException(
            "invalid cursor",
            extra=[{"key": "cursor", "message": "is not a cursor this API returned"}],
        ) from None
