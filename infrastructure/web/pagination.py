"""Keyset pagination, one way for every list: `limit` and `cursor` in, `next_cursor` out.

A list route fetches `limit + 1` rows after the cursor's key and hands them to `paginate`,
which cuts the page and makes the next cursor from the last row's sort key. A cursor is any
msgspec-encodable value (usually a tuple of that key), as URL-safe base64 of its JSON:
opaque to clients, and stable while rows are inserted between pages. A cursor that does not
decode into the expected shape is a 422 naming `cursor`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import msgspec
from litestar.exceptions import ValidationException
from litestar.params import QueryParameter

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")
Row = TypeVar("Row")

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page.")]

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


def paginate(
    rows: Sequence[Row], limit: int, key: Callable[[Row], Any]
) -> tuple[list[Row], str | None]:
    """The page in `rows` (fetched with LIMIT `limit + 1`) and the cursor of the next one,
    None when this is the last; `key` gives a row's sort key, which the cursor carries."""
    page = list(rows[:limit])
    following = encode_token(key(page[-1])) if len(rows) > limit else None
    return page, following
