"""The SQL read models: `notification_view`, `notification_attempts` and `notification_stats`.

A round of events is applied set-wise, in a few statements whatever its size:

1. the rows of the round's notifications are read and locked (`FOR UPDATE`, in id order, so
   concurrent projectors never deadlock);
2. each event is applied in memory when its version is the next one after the row's: a
   repeated or stale event is skipped, and so is every event after a gap, which the
   projector's frontier then finds and catches up;
3. the new rows go back in one upsert, attempts in one insert and one update, and the
   statistics move by status deltas in one sorted upsert.

Every event is therefore applied exactly once, however often it is delivered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import psycopg

from projections.notifications.changes import Change

StatsKey = tuple[str, date, str, str, str]  # tenant, day requested, channel, status, priority
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Applied:
    """A change to apply: its event's stream, version, log position and time."""

    change: Change
    stream_id: UUID
    version: int
    position: int
    at: datetime


# notification_view's columns with their SQL types, for reading rows and writing them back.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("notification_id", "uuid"),
    ("tenant_id", "text"),
    ("channel", "text"),
    ("recipient", "text"),
    ("priority", "text"),
    ("status", "text"),
    ("attempts", "integer"),
    ("last_error", "text"),
    ("provider_message_id", "text"),
    ("send_at", "timestamptz"),
    ("requested_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("version", "bigint"),
    ("position", "bigint"),
    ("created_position", "bigint"),
    ("provider", "text"),
    ("scheduled_at", "timestamptz"),
    ("dispatched_at", "timestamptz"),
    ("sent_at", "timestamptz"),
    ("delivered_at", "timestamptz"),
    ("opened_at", "timestamptz"),
    ("failed_at", "timestamptz"),
    ("cancelled_at", "timestamptz"),
    ("dead_lettered_at", "timestamptz"),
    ("recipient_hash", "bytea"),  # lookups by recipient use it, never the address
)
_NAMES = [name for name, _ in COLUMNS]
_LIST = ", ".join(_NAMES)

_LOCK = (
    f"SELECT {_LIST} FROM notification_view"  # noqa: S608 - constant column list
    " WHERE notification_id = ANY(%b) ORDER BY notification_id FOR UPDATE"
)
# Rows travel by binary COPY into a temporary table, then one statement writes them: COPY
# encodes rows in C, where parameter arrays would be built value by value in Python.
_STAGE = "notification_view_round"
_STAGING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (LIKE notification_view) ON COMMIT DELETE ROWS"
)
_COPY = f"COPY {_STAGE} ({_LIST}) FROM STDIN (FORMAT BINARY)"
_UPSERT = (
    f"INSERT INTO notification_view ({_LIST}) SELECT {_LIST} FROM {_STAGE}"  # noqa: S608
    " ON CONFLICT (notification_id) DO UPDATE SET "
    + ", ".join(f"{name} = EXCLUDED.{name}" for name in _NAMES[1:])
    + " WHERE notification_view.version < EXCLUDED.version"
)
_TYPES = [
    {"integer": "int4", "bigint": "int8", "boolean": "bool"}.get(kind, kind) for _, kind in COLUMNS
]
_ATTEMPT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("notification_id", "uuid"),
    ("attempt", "integer"),
    ("tenant_id", "text"),
    ("channel", "text"),
    ("provider", "text"),
    ("outcome", "text"),
    ("provider_message_id", "text"),
    ("error", "text"),
    ("permanent", "boolean"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
)
_OPEN_ATTEMPTS = (
    "INSERT INTO notification_attempts ("  # noqa: S608 - constant column list
    + ", ".join(name for name, _ in _ATTEMPT_COLUMNS)
    + ") SELECT * FROM unnest("
    + ", ".join(f"%b::{kind}[]" for _, kind in _ATTEMPT_COLUMNS)
    + ") ON CONFLICT DO NOTHING"
)
_CLOSE_ATTEMPTS = (
    "UPDATE notification_attempts a SET outcome = u.outcome,"
    " provider_message_id = coalesce(u.provider_message_id, a.provider_message_id),"
    " error = coalesce(u.error, a.error), permanent = coalesce(u.permanent, a.permanent),"
    " finished_at = u.finished_at"
    " FROM unnest(%b::uuid[], %b::text[], %b::integer[], %b::text[], %b::text[], %b::text[],"
    " %b::boolean[], %b::timestamptz[]) AS u(notification_id, channel, attempt, outcome,"
    " provider_message_id, error, permanent, finished_at)"
    " WHERE a.notification_id = u.notification_id AND a.channel = u.channel"
    " AND a.attempt = u.attempt"
)


@dataclass
class _Round:
    rows: dict[UUID, Row]
    changed: dict[UUID, Row]
    stats: Counter[StatsKey]
    opened: dict[tuple[UUID, str, int], Row]  # by (notification, channel, attempt)
    closed: dict[tuple[UUID, str, int], Row]
    live: bool
    archived_before: dict[UUID, int]  # notifications archived already, at which version
    archived: dict[UUID, Row] = field(default_factory=dict)  # archived now: their last rows
    restored: dict[UUID, int] = field(default_factory=dict)  # restored now: at which position


_ARCHIVED = (
    "SELECT notification_id, version FROM archived_notifications"
    " WHERE notification_id = ANY(%b) AND restored_position IS NULL"
)
_FORGET = "DELETE FROM notification_view WHERE notification_id = ANY(%b)"
_FORGET_ATTEMPTS = "DELETE FROM notification_attempts WHERE notification_id = ANY(%b)"
_TOMBSTONES = (
    "INSERT INTO archived_notifications (notification_id, tenant_id, version, position,"
    " archive, requested_at) SELECT * FROM unnest(%b::uuid[], %b::text[], %b::bigint[],"
    " %b::bigint[], %b::text[], %b::timestamptz[])"
    " ON CONFLICT (notification_id) DO UPDATE SET version = EXCLUDED.version,"
    " position = EXCLUDED.position, archive = EXCLUDED.archive, events_removed = false,"
    " restored_position = NULL WHERE archived_notifications.version < EXCLUDED.version"
)
_RESTORED = (
    "UPDATE archived_notifications a SET restored_position = r.position"
    " FROM unnest(%b::uuid[], %b::bigint[]) AS r(notification_id, position)"
    " WHERE a.notification_id = r.notification_id"
)


def apply(conn: psycopg.Connection[Any], items: list[Applied], *, live: bool = True) -> set[str]:
    """Apply `items` (in stream and version order) in the caller's transaction; returns the
    tenants whose notifications changed.

    `live`: the projector's own tables, where an archived notification must never come
    back, whatever is delivered again. A replay into a shadow or temporary tables passes
    False: it starts empty and replays each notification whole.
    """
    if not items:
        return set()
    ids = sorted({item.stream_id for item in items}, key=_uuid_order)
    locked = conn.execute(_LOCK, (ids,), binary=True).fetchall()
    archived = dict(conn.execute(_ARCHIVED, (ids,), binary=True).fetchall()) if live else {}
    state = _Round(
        rows={row[0]: dict(zip(_NAMES, row, strict=True)) for row in locked},
        changed={},
        stats=Counter(),
        opened={},
        closed={},
        live=live,
        archived_before=archived,
    )
    for item in items:
        _apply_one(state, item)
    _write(conn, state)
    changed = [*state.changed.values(), *state.archived.values()]
    return {row["tenant_id"] for row in changed}


def _apply_one(state: _Round, item: Applied) -> None:
    change = item.change
    if item.version <= state.archived_before.get(item.stream_id, 0):
        return  # archived: its rows are gone for good
    row = state.changed.get(item.stream_id) or state.rows.get(item.stream_id)
    if change.restored is not None:
        if row is None:  # its earlier events may have left the log: its version is its own
            _restore(state, item)
        return
    if item.version != (row["version"] if row else 0) + 1:
        return  # repeated, stale, or after a gap
    if change.archived is not None:
        if row is not None:
            _archive(state, item, row)
        return
    if change.created:
        row = dict.fromkeys(_NAMES)
        row.update(
            notification_id=item.stream_id,
            attempts=0,
            created_position=item.position,
        )
        old: tuple[Any, Any] = (None, None)
    elif row is None:
        return
    else:
        old = (row["status"], row["channel"])
    row.update(change.fields)
    row.update(status=change.status, updated_at=item.at, version=item.version)
    row["position"] = item.position
    state.changed[item.stream_id] = row
    if (row["status"], row["channel"]) != old:
        day = row["requested_at"].astimezone(UTC).date()
        tenant, priority = row["tenant_id"], row["priority"]
        state.stats[(tenant, day, row["channel"], row["status"], priority)] += 1
        if old[0] is not None:
            state.stats[(tenant, day, old[1], old[0], priority)] -= 1
    if change.attempt is not None:
        _attempt(state, item, row)


def _archive(state: _Round, item: Applied, row: Row) -> None:
    """The notification leaves the read models: its row, its attempts, its statistics."""
    state.changed.pop(item.stream_id, None)
    state.rows.pop(item.stream_id, None)
    for attempts in (state.opened, state.closed):
        for key in [k for k in attempts if k[0] == item.stream_id]:
            del attempts[key]
    day = row["requested_at"].astimezone(UTC).date()
    state.stats[(row["tenant_id"], day, row["channel"], row["status"], row["priority"])] -= 1
    state.archived[item.stream_id] = {
        **row,
        "version": item.version,
        "position": item.position,
        "archive": item.change.archived,
    }


def _restore(state: _Round, item: Applied) -> None:
    """The notification comes back from an archive as it was archived."""
    change = item.change
    row: Row = dict.fromkeys(_NAMES)
    row.update(change.fields)
    row.update(
        notification_id=item.stream_id,
        status=change.status,
        updated_at=item.at,
        version=item.version,
        position=item.position,
    )
    state.changed[item.stream_id] = row
    day = row["requested_at"].astimezone(UTC).date()
    state.stats[(row["tenant_id"], day, row["channel"], row["status"], row["priority"])] += 1
    for attempt in change.restored or ():
        state.opened[(item.stream_id, attempt["channel"], attempt["attempt"])] = {
            **attempt,
            "notification_id": item.stream_id,
            "tenant_id": row["tenant_id"],
        }
    state.restored[item.stream_id] = item.position


def _attempt(state: _Round, item: Applied, row: Row) -> None:
    attempt = item.change.attempt
    assert attempt is not None  # noqa: S101 - checked by the caller
    # Each channel counts its attempts from 1: a fallback's first attempt is not the first's.
    channel = attempt.values["channel"] if attempt.kind == "started" else row["channel"]
    key = (item.stream_id, channel, attempt.attempt)
    if attempt.kind == "started":
        state.opened[key] = {
            "notification_id": item.stream_id,
            "attempt": attempt.attempt,
            "tenant_id": row["tenant_id"],
            "channel": channel,
            "provider": attempt.values["provider"],
            "outcome": "dispatching",
            "provider_message_id": None,
            "error": None,
            "permanent": None,
            "started_at": item.at,
            "finished_at": None,
        }
        return
    closing = {
        "outcome": attempt.kind,
        "provider_message_id": attempt.values.get("provider_message_id"),
        "error": attempt.values.get("error"),
        "permanent": attempt.values.get("permanent"),
        "finished_at": item.at,
    }
    target = state.opened.get(key)
    if target is not None:  # opened in this same round: write it closed
        target.update(closing)
    else:
        state.closed[key] = {
            "notification_id": item.stream_id,
            "channel": channel,
            "attempt": attempt.attempt,
        }
        state.closed[key].update(closing)


def _uuid_order(key: UUID) -> int:
    return key.int


def _columns(rows: list[Row], names: list[str]) -> list[list[Any]]:
    return [[row[name] for row in rows] for name in names]


def _write(conn: psycopg.Connection[Any], state: _Round) -> None:
    if state.archived:
        _forget(conn, state)
    if state.changed:
        conn.execute(_STAGING)
        with conn.cursor().copy(_COPY) as copy:
            copy.set_types(_TYPES)
            for key in sorted(state.changed, key=_uuid_order):
                row = state.changed[key]
                copy.write_row([row[name] for name in _NAMES])
        conn.execute(_UPSERT)
    if state.opened:
        rows = [state.opened[key] for key in sorted(state.opened)]
        conn.execute(_OPEN_ATTEMPTS, _columns(rows, [name for name, _ in _ATTEMPT_COLUMNS]))
    if state.closed:
        rows = [state.closed[key] for key in sorted(state.closed)]
        names = [
            "notification_id",
            "channel",
            "attempt",
            "outcome",
            "provider_message_id",
            "error",
            "permanent",
            "finished_at",
        ]
        conn.execute(_CLOSE_ATTEMPTS, _columns(rows, names))
    _move_stats(conn, state.stats)
    if state.restored and state.live:
        back = sorted(state.restored, key=_uuid_order)
        conn.execute(_RESTORED, (back, [state.restored[key] for key in back]))


def _forget(conn: psycopg.Connection[Any], state: _Round) -> None:
    """Archived notifications leave the tables; the live projection records where they went
    (a replay into a shadow or temporary tables leaves that record alone)."""
    gone = sorted(state.archived, key=_uuid_order)
    conn.execute(_FORGET, (gone,))
    conn.execute(_FORGET_ATTEMPTS, (gone,))
    if not state.live:
        return
    rows = [state.archived[key] for key in gone]
    conn.execute(
        _TOMBSTONES,
        (
            gone,
            [r["tenant_id"] for r in rows],
            [r["version"] for r in rows],
            [r["position"] for r in rows],
            [r["archive"] for r in rows],
            [r["requested_at"] for r in rows],
        ),
    )


def _move_stats(conn: psycopg.Connection[Any], stats: Counter[StatsKey]) -> None:
    moves = sorted((key, delta) for key, delta in stats.items() if delta)
    if not moves:
        return
    columns = list(zip(*(key for key, _ in moves), strict=True))
    conn.execute(
        "INSERT INTO notification_stats (tenant_id, day, channel, status, priority, count)"
        " SELECT * FROM unnest(%b::text[], %b::date[], %b::text[], %b::text[], %b::text[],"
        " %b::bigint[]) ON CONFLICT (tenant_id, day, channel, status, priority)"
        " DO UPDATE SET count = notification_stats.count + EXCLUDED.count",
        (*map(list, columns), [delta for _, delta in moves]),
    )
