"""Opening an export: a repeatable-read snapshot, the read model in it as of one position,
and the bytes of the rows asked for.

- Notifications: the position is the notifications projection's. Rows that changed after it
  are rewound: their events up to it are replayed, with the projection's own SQL, into
  temporary tables that stand in for the live ones for this transaction.
- Audit logs: the position is the audit projection's, which reads the log in order, so the
  live rows are exact at it; for an earlier position, entries still growing then are
  rebuilt from their events up to it.
- Events: the tenant's notification events up to the notifications projection's position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from infrastructure.archives.files import ArchiveFiles
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.tracking import (
    AUDIT_PROJECTION,
    NOTIFICATIONS_PROJECTION,
    read_position,
)
from infrastructure.exports.stream import ExportSpec, ExportStream, PositionNotReachedError
from projections.exports.archived import load_archived
from projections.exports.events import event_chunks
from projections.exports.render import TIMESTAMP, Column, rendered
from projections.exports.rewind import rewind_audit, rewind_notifications

TEXT, INT = pa.string(), pa.int64()
NOTIFICATION_COLUMNS = (
    Column("id", "notification_id::text", TEXT),
    Column("channel", "channel", TEXT),
    Column("recipient", "recipient", TEXT),
    Column("priority", "priority", TEXT),
    Column("status", "status", TEXT),
    Column("requested_at", "requested_at", TIMESTAMP),
    Column("updated_at", "updated_at", TIMESTAMP),
    Column("attempts", "attempts::bigint", INT),
    Column("last_error", "last_error", TEXT),
    Column("provider", "provider", TEXT),
    Column("provider_message_id", "provider_message_id", TEXT),
    Column("send_at", "send_at", TIMESTAMP),
    Column("scheduled_at", "scheduled_at", TIMESTAMP),
    Column("dispatched_at", "dispatched_at", TIMESTAMP),
    Column("sent_at", "sent_at", TIMESTAMP),
    Column("delivered_at", "delivered_at", TIMESTAMP),
    Column("opened_at", "opened_at", TIMESTAMP),
    Column("failed_at", "failed_at", TIMESTAMP),
    Column("cancelled_at", "cancelled_at", TIMESTAMP),
    Column("dead_lettered_at", "dead_lettered_at", TIMESTAMP),
    Column("version", "version", INT),
    Column("position", "position", INT),
)
AUDIT_COLUMNS = (
    Column("id", "entry_id", TEXT),
    Column("at", "at", TIMESTAMP),
    Column("action", "action", TEXT),
    Column("actor", "actor", TEXT),
    Column("actor_kind", "actor_kind", TEXT),
    Column("actor_roles", "array_to_string(actor_roles, ' ')", TEXT),
    Column("ip", "ip", TEXT),
    Column("user_agent", "user_agent", TEXT),
    Column("request_id", "request_id", TEXT),
    Column("subject", "subject", TEXT),
    Column("count", "count::bigint", INT),
    Column("details", "details::text", TEXT),
    Column("position", "first_position", INT),
)


def open_export(
    database_url: str,
    codec: EventCodec,
    spec: ExportSpec,
    archives: ArchiveFiles | None = None,
) -> ExportStream:
    """The export `spec` asks for, ready to stream; raises PositionNotReachedError for a
    position beyond what its read model reflects. The stream holds a transaction until it
    is read to the end or closed. `archives` is where `include_archived` reads from."""
    conn = psycopg.connect(database_url)
    try:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        position = _position(conn, spec)
        chunks, count = _opened(conn, codec, spec, position, archives)
    except BaseException:
        conn.close()
        raise

    def close() -> None:
        if not conn.closed:
            conn.rollback()
            conn.close()

    return ExportStream(spec, position, chunks, count, close)


def _position(conn: psycopg.Connection[Any], spec: ExportSpec) -> int:
    """The position to export at: the one asked for, if the read model has reached it."""
    tracked = AUDIT_PROJECTION if spec.kind == "audit-logs" else NOTIFICATIONS_PROJECTION
    reached = read_position(conn, tracked)
    position = reached if spec.position is None else spec.position
    if position > reached:
        raise PositionNotReachedError(position, reached)
    return position


def _opened(
    conn: psycopg.Connection[Any],
    codec: EventCodec,
    spec: ExportSpec,
    position: int,
    archives: ArchiveFiles | None,
) -> tuple[Iterator[bytes], Callable[[], int]]:
    params: dict[str, Any] = {
        "tenant": spec.tenant,
        "position": position,
        "start": spec.start,
        "end": spec.end,
        "status": spec.status,
        "channel": spec.channel,
        "action": spec.action,
        "actor": spec.actor,
    }
    if spec.kind == "events":
        return event_chunks(conn, codec, spec, position)
    if spec.kind == "notifications":
        live, rewound = rewind_notifications(conn, codec, spec.tenant, position)
        unchanged = sql.SQL(
            "SELECT * FROM {live}.notification_view WHERE tenant_id = %(tenant)s"
            " AND created_position <= %(position)s AND position <= %(position)s"
        ).format(live=sql.Identifier(live))
        if rewound:
            unchanged = sql.SQL("{} UNION ALL SELECT * FROM pg_temp.notification_view").format(
                unchanged
            )
        if spec.include_archived:
            if archives is None:
                raise ValueError("include_archived needs the archive directory")
            load_archived(
                conn,
                archives,
                live,
                tenant=spec.tenant,
                position=position,
                start=spec.start,
                end=spec.end,
            )
            unchanged = sql.SQL("{} UNION ALL SELECT * FROM pg_temp.archived_rows").format(
                unchanged
            )
        source = sql.SQL(
            "SELECT * FROM ({}) AS at_position"
            " WHERE (%(status)s::text IS NULL OR status = %(status)s)"
            " AND (%(channel)s::text IS NULL OR channel = %(channel)s)"
            " AND (%(start)s::timestamptz IS NULL OR requested_at >= %(start)s)"
            " AND (%(end)s::timestamptz IS NULL OR requested_at < %(end)s)"
        ).format(unchanged)
        return rendered(
            conn, spec.format, NOTIFICATION_COLUMNS, source, params=params, order="created_position"
        )
    live = rewind_audit(conn, codec, spec.tenant, position)
    source = sql.SQL(
        "SELECT * FROM ("
        " SELECT * FROM {live}.audit_log WHERE tenant_id = %(tenant)s"
        " AND last_position <= %(position)s"
        " UNION ALL SELECT * FROM pg_temp.audit_log WHERE tenant_id = %(tenant)s"
        ") AS at_position WHERE (%(action)s::text IS NULL OR action = %(action)s)"
        " AND (%(actor)s::text IS NULL OR actor = %(actor)s)"
        " AND (%(start)s::timestamptz IS NULL OR at >= %(start)s)"
        " AND (%(end)s::timestamptz IS NULL OR at < %(end)s)"
    ).format(live=sql.Identifier(live))
    return rendered(conn, spec.format, AUDIT_COLUMNS, source, params=params, order="first_position")
