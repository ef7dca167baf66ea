"""Time ranges in queries, one way for every route: `from` (inclusive) and `to` (exclusive),
each an RFC 3339 time, and `from` never after `to`. RFC 3339 allows offsets up to 23:59 and
PostgreSQL only up to 15:59, so `check_range` hands both ends back in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar.exceptions import ValidationException
from litestar.params import QueryParameter

From = Annotated[
    datetime | None, QueryParameter(name="from", description="At or after this time (RFC 3339).")
]
To = Annotated[
    datetime | None, QueryParameter(name="to", description="Before this time (RFC 3339).")
]


Range = tuple[datetime | None, datetime | None]


def check_range(start: datetime | None, end: datetime | None) -> Range:
    """Both ends in UTC, one without an offset taken as UTC (so that the two compare); 422
    naming `from` when it comes after `to`."""
    start, end = to_utc(_assume_utc(start), "from"), to_utc(_assume_utc(end), "to")
    if start is not None and end is not None and start > end:
        raise ValidationException(
            "invalid time range", extra=[{"key": "from", "message": "must not be after `to`"}]
        )
    return start, end


def to_utc(value: datetime | None, name: str) -> datetime | None:
    """`value` in UTC (one without an offset as it is); 422 naming `name` when that is
    before year 1."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is a time before year 1
        raise ValidationException(
            "time out of range", extra=[{"key": name, "message": "is before year 1 in UTC"}]
        ) from None


def _assume_utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
