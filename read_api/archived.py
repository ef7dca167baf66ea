"""Answering for notifications that archival took out of the read models: 410 Gone, naming
the archive that holds each, rather than a 404 that would say it never existed."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from infrastructure.web.problems import ArchivedError

_ARCHIVE = (
    "SELECT archive FROM archived_notifications WHERE notification_id = %s AND tenant_id = %s"
    " AND restored_position IS NULL"
)


async def raise_if_archived(conn: AsyncConnection[Any], notification_id: UUID, tenant: str) -> None:
    row = await (await conn.execute(_ARCHIVE, (notification_id, tenant))).fetchone()
    if row is not None:
        raise ArchivedError(f"notification {notification_id}", row[0])
