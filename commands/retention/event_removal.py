"""Removing the events of archived notifications once the events' retention has passed.

Only a notification whose archival is its stream's last event loses its events, and only
once every follower of the log (the relay, the notifications and audit projections) has
passed that event: nothing downstream ever misses a fact because it left the log first.
Each batch runs under the event store's append lock, so no event can join a stream between
the check and the removal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from infrastructure.eventstore.store import APPEND_LOCK, EVENTS_TABLE
from infrastructure.eventstore.tracking import (
    AUDIT_PROJECTION,
    EVENTS_REMOVED_THROUGH,
    NOTIFICATIONS_PROJECTION,
    RELAY,
    stored_position,
)

BATCH = 2_000  # notifications whose events go in one transaction

_DUE = sql.SQL(
    "SELECT a.notification_id FROM archived_notifications a"
    " WHERE a.tenant_id = %s AND a.requested_at < %s AND NOT a.events_removed"
    " AND a.restored_position IS NULL AND a.position <= %s"
    " AND NOT EXISTS (SELECT 1 FROM {events} e WHERE e.originator_id = a.notification_id"
    "  AND e.originator_version > a.version)"
    " ORDER BY a.requested_at LIMIT %s"
).format(events=sql.Identifier(EVENTS_TABLE))
_REMOVE = sql.SQL("DELETE FROM {} WHERE originator_id = ANY(%s) RETURNING notification_id").format(
    sql.Identifier(EVENTS_TABLE)
)
_HORIZON = (
    "UPDATE tracking SET notification_id = greatest(notification_id, %s)"
    " WHERE application_name = %s"
)
_MARK = "UPDATE archived_notifications SET events_removed = true WHERE notification_id = ANY(%s)"
_FOLLOWERS = (RELAY, NOTIFICATIONS_PROJECTION, AUDIT_PROJECTION)


def followers_position(conn: psycopg.Connection[Any]) -> int:
    """The position every follower of the log has reached."""
    return min(stored_position(conn, name) for name in _FOLLOWERS)


def remove_archived_events(conn: psycopg.Connection[Any], tenant: str, before: datetime) -> int:
    """Remove the events of the tenant's archived notifications requested before `before`;
    returns how many events left the event store."""
    removed = 0
    while True:
        seen = followers_position(conn)
        with conn.transaction():
            conn.execute(APPEND_LOCK)
            due = [row[0] for row in conn.execute(_DUE, (tenant, before, seen, BATCH))]
            if not due:
                return removed
            positions = [row[0] for row in conn.execute(_REMOVE, (due,))]
            conn.execute(_MARK, (due,))
            if positions:
                stored_position(conn, EVENTS_REMOVED_THROUGH)  # makes its row the first time
                conn.execute(_HORIZON, (max(positions), EVENTS_REMOVED_THROUGH))
            removed += len(positions)
