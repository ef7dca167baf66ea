"""Archived notifications in an export (`include_archived=true`): those archived as of the
export's position are read back from their archive files into a temporary table that the
export's SELECT takes as part of the read model.

A notification is taken from the file that the projection's record names, so an earlier
copy (in a file from before a restore and a second archival) never doubles it; one restored
after the position counts as archived at it. Files are read a batch at a time, and only
those of the days the export's time range covers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from infrastructure.archives.files import ArchiveFiles
from infrastructure.archives.layout import NOTIFICATION_FIELDS
from projections.notifications.view import COLUMNS

# Archives hold the view's columns but the recipient's keyed hash, which nothing exported has.
_NAMES = [name for name, _ in COLUMNS if name in NOTIFICATION_FIELDS]
_AS_OF = """
CREATE TEMPORARY TABLE archived_as_of ON COMMIT DROP AS
SELECT notification_id, archive FROM archived_notifications
WHERE tenant_id = %(tenant)s AND position <= %(position)s
  AND (restored_position IS NULL OR restored_position > %(position)s)
  AND (%(start)s::timestamptz IS NULL OR requested_at >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR requested_at < %(end)s)
"""
_FILES = "SELECT DISTINCT archive FROM archived_as_of ORDER BY archive"
_KEEP = (
    "INSERT INTO archived_rows SELECT s.* FROM archived_stage s JOIN archived_as_of a"
    " ON a.notification_id = s.notification_id AND a.archive = %s"
)


def load_archived(
    conn: psycopg.Connection[Any],
    files: ArchiveFiles,
    live: str,
    *,
    tenant: str,
    position: int,
    start: datetime | None,
    end: datetime | None,
) -> None:
    """Fill `pg_temp.archived_rows` (the shape of `notification_view`) with the tenant's
    notifications that were archived as of `position`, requested in [start, end)."""
    for table in ("archived_rows", "archived_stage"):
        conn.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {table} (LIKE {live}.notification_view) ON COMMIT DROP"
            ).format(table=sql.Identifier(table), live=sql.Identifier(live))
        )
    params = {"tenant": tenant, "position": position, "start": start, "end": end}
    conn.execute(_AS_OF, params)
    copy_rows = sql.SQL("COPY archived_stage ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, _NAMES))
    )
    for (path,) in conn.execute(_FILES).fetchall():
        with conn.cursor() as cursor:
            with cursor.copy(copy_rows) as copy:
                for batch in files.read(path):
                    for row in batch.to_pylist():
                        copy.write_row([row[name] for name in _NAMES])
            cursor.execute(_KEEP, (path,))
            cursor.execute("TRUNCATE archived_stage")
