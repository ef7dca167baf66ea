"""The SQL read models: `notification_view`, `notification_attempts` and `notification_stats`.

Every write is guarded by the stream version: a row changes only when the event's version is
the next one after the row's, so a redelivered, repeated or early event changes nothing.
Attempt rows change in the same statement as the view row, so the guard covers them too.
Each applied change returns what the statistics need, and the statistics move once per
round in one upsert whose rows are sorted, so concurrent projectors never deadlock on them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any
from uuid import UUID

import psycopg

from projections.notifications.changes import AttemptChange, Change

StatsKey = tuple[str, date, str, str, str]  # tenant, day requested, channel, status, priority


@dataclass(frozen=True, slots=True)
class Applied:
    """A change to apply: its event's stream, version, log position and time."""

    change: Change
    stream_id: UUID
    version: int
    position: int
    at: datetime


_CREATE = (
    "INSERT INTO notification_view (notification_id, tenant_id, channel, recipient, priority,"
    " status, send_at, requested_at, updated_at, version, position, created_position)"
    " VALUES (%(id)s, %(f_tenant_id)s, %(f_channel)s, %(f_recipient)s, %(f_priority)s,"
    " 'requested', %(f_send_at)s, %(f_requested_at)s, %(at)s, %(version)s, %(position)s,"
    " %(position)s)"
    " ON CONFLICT (notification_id) DO NOTHING"
    " RETURNING tenant_id, requested_at, priority, NULL, NULL, status, channel"
)

_ATTEMPT = {
    "started": (
        ", attempt AS (INSERT INTO notification_attempts (notification_id, attempt, tenant_id,"
        " channel, provider, outcome, started_at) SELECT notification_id, %(attempt)s,"
        " tenant_id, %(a_channel)s, %(a_provider)s, 'dispatching', %(at)s FROM changed"
        " ON CONFLICT DO NOTHING)"
    ),
    "sent": (
        ", attempt AS (UPDATE notification_attempts a SET outcome = 'sent',"
        " provider_message_id = %(a_provider_message_id)s, finished_at = %(at)s FROM changed"
        " WHERE a.notification_id = changed.notification_id AND a.attempt = %(attempt)s)"
    ),
    "failed": (
        ", attempt AS (UPDATE notification_attempts a SET outcome = 'failed',"
        " error = %(a_error)s, permanent = %(a_permanent)s, finished_at = %(at)s FROM changed"
        " WHERE a.notification_id = changed.notification_id AND a.attempt = %(attempt)s)"
    ),
}


@cache
def _update(columns: tuple[str, ...], attempt: str | None) -> str:
    # The columns are the field names of `Change`, written in this package: no outside text.
    return "".join(
        [
            "WITH old AS (SELECT notification_id, status, channel FROM notification_view"
            " WHERE notification_id = %(id)s AND version = %(version)s - 1 FOR UPDATE),"
            " changed AS (UPDATE notification_view v SET status = %(status)s",
            *(f", {column} = %(f_{column})s" for column in columns),
            ", updated_at = %(at)s, version = %(version)s, position = %(position)s"
            " FROM old WHERE v.notification_id = old.notification_id"
            " RETURNING v.notification_id, v.tenant_id, v.requested_at, v.priority,"
            " old.status AS old_status, old.channel AS old_channel, v.status, v.channel)",
            _ATTEMPT[attempt] if attempt else "",
            " SELECT tenant_id, requested_at, priority, old_status, old_channel, status, channel"
            " FROM changed",
        ]
    )


def statement(item: Applied) -> tuple[str, dict[str, Any]]:
    """The SQL that applies one change, and its parameters."""
    change = item.change
    params: dict[str, Any] = {
        "id": item.stream_id,
        "version": item.version,
        "position": item.position,
        "at": item.at,
        "status": change.status,
    }
    params.update({f"f_{column}": value for column, value in change.fields.items()})
    if change.created:
        return _CREATE, params
    attempt: AttemptChange | None = change.attempt
    if attempt is not None:
        params["attempt"] = attempt.attempt
        params.update({f"a_{name}": value for name, value in attempt.values.items()})
    return _update(tuple(change.fields), attempt.kind if attempt else None), params


def apply(conn: psycopg.Connection[Any], items: list[Applied]) -> int:
    """Apply `items` in the caller's transaction; returns how many changed a row."""
    stats: Counter[StatsKey] = Counter()
    with conn.pipeline():
        cursors = [conn.execute(*statement(item)) for item in items]
    changed = 0
    for cursor in cursors:
        row = cursor.fetchone()
        if row is None:
            continue  # stale, repeated or early: the version guard kept the row as it was
        changed += 1
        tenant, requested_at, priority, old_status, old_channel, status, channel = row
        day = requested_at.astimezone(UTC).date()
        if (old_status, old_channel) != (status, channel):
            stats[(tenant, day, channel, status, priority)] += 1
            if old_status is not None:
                stats[(tenant, day, old_channel, old_status, priority)] -= 1
    _move_stats(conn, stats)
    return changed


def _move_stats(conn: psycopg.Connection[Any], stats: Counter[StatsKey]) -> None:
    moves = sorted((key, delta) for key, delta in stats.items() if delta)
    if not moves:
        return
    columns = list(zip(*(key for key, _ in moves), strict=True))
    conn.execute(
        "INSERT INTO notification_stats (tenant_id, day, channel, status, priority, count)"
        " SELECT * FROM unnest(%s::text[], %s::date[], %s::text[], %s::text[], %s::text[],"
        " %s::bigint[]) ON CONFLICT (tenant_id, day, channel, status, priority)"
        " DO UPDATE SET count = notification_stats.count + EXCLUDED.count",
        (*map(list, columns), [delta for _, delta in moves]),
    )
