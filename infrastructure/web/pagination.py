"""Keyset pagination cursors: opaque to clients, stable while rows are inserted between pages.

A cursor is any msgspec-encodable value (usually a tuple of the last row's sort key), as
URL-safe base64 of its JSON. A cursor that does not decode into the expected shape is a 422
naming `cursor`.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from litestar.exceptions import ValidationException

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode_token(value: Any) -> str:
    return base64.urlsafe_b64encode(_encoder.encode(value)).decode().rstrip("=")


def decode_token(cursor: str, shape: type[T]) -> T:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=shape)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValidationException(
            "invalid cursor",
            extra=[{"key": "cursor", "message": "is not a cursor this API returned"}],
        ) from None


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    return encode_token((created_at, row_id))


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (created_at, id) after which the next page starts; 422 naming `cursor` if garbled."""
    return decode_token(cursor, tuple[datetime, UUID])
