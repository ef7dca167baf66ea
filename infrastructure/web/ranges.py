"""Time ranges in queries, one way for every route: `from` (inclusive) and `to` (exclusive),
each an RFC 3339 time, and `from` never after `to`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar.exceptions import ValidationException
from litestar.params import QueryParameter

From = Annotated[
    datetime | None, QueryParameter(name="from", description="At or after this time (RFC 3339).")
]
To = Annotated[
    datetime | None, QueryParameter(name="to", description="Before this time (RFC 3339).")
]


def check_range(start: datetime | None, end: datetime | None) -> None:
    """422 naming `from` when it comes after `to`."""
    if start is not None and end is not None and start > end:
        raise ValidationException(
            "invalid time range", extra=[{"key": "from", "message": "must not be after `to`"}]
        )
