"""Shadows: schemas holding empty copies of the SQL read-model tables, and replaying the log
into one.

With the connection's search path set to the shadow first, the projection's own SQL
(`view.apply`) writes there, so a replay exercises exactly the code the live projector runs.
`verify.py` and `rebuild.py` both replay into a shadow.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.eventstore.tracking import read_after
from projections.notifications import view
from projections.notifications.changes import change_for
from projections.notifications.view import Applied

BATCH = 5000
TABLES = ("notification_view", "notification_attempts", "notification_stats")
VIEWS = ("recipient_inbox", "dead_letters")

Progress = Callable[[int, int], None]  # (events replayed, events to replay)


def quiet(_done: int, _total: int) -> None:
    return None


def head(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"  # noqa: S608
    ).fetchone()
    return int(row[0]) if row else 0


def count_events(conn: psycopg.Connection[Any], after: int, upto: int, names: list[str]) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM {EVENTS_TABLE} WHERE notification_id > %s"  # noqa: S608
        " AND notification_id <= %s AND split_part(topic, '@', 1) = ANY(%s)",
        (after, upto, names),
    ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def shadow(conn: psycopg.Connection[Any], name: str | None = None) -> Iterator[str]:
    """A schema with empty copies of the read-model tables, first on the search path."""
    live = live_schema(conn)
    schema = name or f"herald_shadow_{secrets.token_hex(4)}"
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for table in TABLES:
        conn.execute(
            sql.SQL("CREATE TABLE {}.{} (LIKE {}.{} INCLUDING ALL)").format(
                sql.Identifier(schema),
                sql.Identifier(table),
                sql.Identifier(live),
                sql.Identifier(table),
            )
        )
    conn.execute(
        sql.SQL("SET search_path TO {}, {}").format(sql.Identifier(schema), sql.Identifier(live))
    )
    try:
        yield schema
    finally:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(live)))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def live_schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = 'notification_view'::regclass"
    ).fetchone()
    assert row is not None  # noqa: S101 - the migration made it
    return str(row[0])


def replay(
    conn: psycopg.Connection[Any],
    codec: EventCodec,
    names: list[str],
    *,
    after: int,
    upto: int,
    progress: Progress = quiet,
    done: int = 0,
    total: int = 0,
    seen: Counter[tuple[str, str]] | None = None,
) -> int:
    """Apply the log's events in (after, upto] through the search path; returns `upto`.
    `seen` counts the events by tenant and type, for the dashboard counters."""
    position = after
    while position < upto:
        rows = [r for r in read_after(conn, position, names, BATCH) if r[0] <= upto]
        if not rows:
            break
        items = []
        events = codec.decode_many([(topic, state) for *_, topic, state in rows])
        for (at_position, stream_id, version, _, _), event in zip(rows, events, strict=True):
            change = change_for(event, codec.recipient_hash)
            items.append(Applied(change, stream_id, version, at_position, event.at))
            if seen is not None:
                seen[(getattr(event, "tenant_id", ""), type(event).__name__)] += 1
        items.sort(key=lambda item: (item.stream_id.int, item.version))
        with conn.transaction():
            view.apply(conn, items, live=False)
        position = int(rows[-1][0])
        done += len(rows)
        progress(done, max(done, total))
    return upto


_STREAMS = (
    "SELECT notification_id, originator_id, originator_version, topic, state"  # noqa: S608
    f" FROM {EVENTS_TABLE} WHERE originator_id = ANY(%s) AND notification_id <= %s"
    " ORDER BY notification_id"
)


def replay_streams(
    conn: psycopg.Connection[Any], codec: EventCodec, ids: list[UUID], upto: int
) -> None:
    """Apply the events of the notifications `ids` up to position `upto` through the search
    path (a shadow, or temporary tables), in the caller's transaction."""
    items = []
    rows = conn.execute(_STREAMS, (ids, upto), binary=True).fetchall()
    events = codec.decode_many([(topic, state) for *_, topic, state in rows])
    for (at_position, stream_id, version, _, _), event in zip(rows, events, strict=True):
        change = change_for(event, codec.recipient_hash)
        items.append(Applied(change, stream_id, version, at_position, event.at))
    items.sort(key=lambda item: (item.stream_id.int, item.version))
    view.apply(conn, items, live=False)
