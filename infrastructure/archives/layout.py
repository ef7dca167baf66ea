"""What an archive file holds and where it lives under the archive directory.

Files are laid out the Hive way, `tenant_id=T/day=D/part-ID.parquet`, so that any
Parquet reader (pyarrow, DuckDB, Spark) sees the directory as one dataset partitioned by
tenant and day. Each row is a notification as its read model held it when it was archived,
with its delivery attempts nested.
"""

from __future__ import annotations

from datetime import date
from pathlib import PurePosixPath
from urllib.parse import quote, unquote
from uuid import UUID

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
ATTEMPT = pa.struct(
    [
        ("attempt", pa.int32()),
        ("channel", pa.string()),
        ("provider", pa.string()),
        ("outcome", pa.string()),
        ("provider_message_id", pa.string()),
        ("error", pa.string()),
        ("permanent", pa.bool_()),
        ("started_at", TIMESTAMP),
        ("finished_at", TIMESTAMP),
    ]
)
NOTIFICATIONS = pa.schema(
    [
        ("notification_id", pa.string()),
        ("tenant_id", pa.string()),
        ("channel", pa.string()),
        ("recipient", pa.string()),
        ("priority", pa.string()),
        ("status", pa.string()),
        ("attempts", pa.int32()),
        ("last_error", pa.string()),
        ("provider", pa.string()),
        ("provider_message_id", pa.string()),
        ("send_at", TIMESTAMP),
        ("requested_at", TIMESTAMP),
        ("updated_at", TIMESTAMP),
        ("scheduled_at", TIMESTAMP),
        ("dispatched_at", TIMESTAMP),
        ("sent_at", TIMESTAMP),
        ("delivered_at", TIMESTAMP),
        ("opened_at", TIMESTAMP),
        ("failed_at", TIMESTAMP),
        ("cancelled_at", TIMESTAMP),
        ("dead_lettered_at", TIMESTAMP),
        ("version", pa.int64()),
        ("position", pa.int64()),
        ("created_position", pa.int64()),
        ("attempt_log", pa.list_(ATTEMPT)),
    ]
)
ATTEMPT_FIELDS = [field.name for field in ATTEMPT]
NOTIFICATION_FIELDS = NOTIFICATIONS.names


def archive_path(tenant_id: str, day: date, file_id: UUID) -> str:
    """The path, under the archive directory, of a file of notifications of a tenant and a
    day (the day they were requested, UTC)."""
    return f"tenant_id={quote(tenant_id, safe='')}/day={day.isoformat()}/part-{file_id}.parquet"


def partition_of(path: str) -> tuple[str, date]:
    """The tenant and day of an archive's path; ValueError naming it when it is not one."""
    parts = PurePosixPath(path).parts
    if (
        len(parts) != len(("tenant", "day", "file"))
        or not parts[0].startswith("tenant_id=")
        or not parts[1].startswith("day=")
    ):
        raise ValueError(f"{path}: not an archive path (tenant_id=T/day=D/part-....parquet)")
    tenant = unquote(parts[0].removeprefix("tenant_id="))
    try:
        day = date.fromisoformat(parts[1].removeprefix("day="))
    except ValueError:
        raise ValueError(f"{path}: {parts[1]} is not a day (day=YYYY-MM-DD)") from None
    return tenant, day
