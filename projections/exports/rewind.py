"""Rewinding read-model rows to an earlier log position, inside an export's transaction.

Temporary tables of the live tables' shape are created; since PostgreSQL looks in the
session's temporary schema first, the projections' own SQL, run now, writes there. Rows
that changed after the position are replayed into them from their events up to it; the
export then reads the live rows that did not change, and these.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from infrastructure.eventstore.codec import EventCodec
from projections.audit.entries import entries
from projections.audit.projector import audited_after, write
from projections.notifications.shadow import replay_streams

NOTIFICATION_TABLES = ("notification_view", "notification_attempts", "notification_stats")


def _schema_of(conn: psycopg.Connection[Any], table: str) -> str:
    row = conn.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass(%s)",
        (table,),
    ).fetchone()
    if row is None:
        raise LookupError(f"{table} does not exist; run herald migrate")
    return str(row[0])


def _temporary_copies(conn: psycopg.Connection[Any], live: str, tables: tuple[str, ...]) -> None:
    for table in tables:
        conn.execute(
            sql.SQL("CREATE TEMPORARY TABLE {table} (LIKE {live}.{table} INCLUDING ALL)").format(
                table=sql.Identifier(table), live=sql.Identifier(live)
            )
        )


def rewind_notifications(
    conn: psycopg.Connection[Any], codec: EventCodec, tenant: str, position: int
) -> tuple[str, bool]:
    """Temporary notification tables holding the tenant's rows that changed after
    `position`, as they were at it; returns the live tables' schema, and whether any row
    needed rewinding (when none did, no temporary table was made)."""
    live = _schema_of(conn, "notification_view")
    # Rows that changed after the position, and notifications archived after it: both were
    # in the read model at it, as their events up to it say.
    ahead = conn.execute(
        sql.SQL(
            "SELECT notification_id FROM {live}.notification_view WHERE tenant_id = %(tenant)s"
            " AND created_position <= %(position)s AND position > %(position)s"
            " UNION SELECT notification_id FROM {live}.archived_notifications"
            " WHERE tenant_id = %(tenant)s AND position > %(position)s"
            " AND restored_position IS NULL AND NOT events_removed"
        ).format(live=sql.Identifier(live)),
        {"tenant": tenant, "position": position},
    ).fetchall()
    if not ahead:
        return live, False
    _temporary_copies(conn, live, NOTIFICATION_TABLES)
    replay_streams(conn, codec, [row[0] for row in ahead], position)
    return live, True


def rewind_audit(
    conn: psycopg.Connection[Any], codec: EventCodec, tenant: str, position: int
) -> str:
    """A temporary audit log holding the tenant's entries still growing at `position`, as
    they were then; returns the live table's schema."""
    live = _schema_of(conn, "audit_log")
    growing = dict(
        conn.execute(
            sql.SQL(
                "SELECT entry_id, first_position FROM {}.audit_log WHERE tenant_id = %s"
                " AND first_position <= %s AND last_position > %s"
            ).format(sql.Identifier(live)),
            (tenant, position, position),
        ).fetchall()
    )
    _temporary_copies(conn, live, ("audit_log",))
    after = min(growing.values(), default=position) - 1
    while growing and after < position:
        logged, reached = audited_after(conn, codec, after, position)
        kept = [e for e in entries(logged) if e.entry_id in growing]
        write(conn, kept)
        if reached == after:
            break
        after = reached
    return live
