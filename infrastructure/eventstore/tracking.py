"""Positions of the processes that follow the global log (the relay, each projection).

A follower's position moves with a compare-and-set, so two copies of one follower, or a
reset made while it runs, are noticed instead of silently overwritten.
"""

from __future__ import annotations

from typing import Any

import psycopg

from infrastructure.eventstore.store import EVENTS_TABLE

# The notifications projection's position: every notification event up to it is reflected in
# the read models. Written by the projector, read by the read API for read-your-writes.
NOTIFICATIONS_PROJECTION = "projection:notifications"
RELAY = "relay"  # the outbox relay's position: everything up to it is on Kafka
AUDIT_PROJECTION = "projection:audit"  # every event up to it is reflected in the audit log
# Not a follower: the newest position whose event retention removed from the log. Before
# it, the log no longer holds every event the projections were made from.
EVENTS_REMOVED_THROUGH = "retention:events-removed-through"

_AFTER = (
    "SELECT notification_id, originator_id, originator_version, topic, state"  # noqa: S608
    f" FROM {EVENTS_TABLE} WHERE notification_id > %s"
    " AND split_part(topic, '@', 1) = ANY(%s) ORDER BY notification_id LIMIT %s"
)


def read_after(
    conn: psycopg.Connection[Any], after: int, names: list[str], limit: int
) -> list[tuple[Any, ...]]:
    """The next `limit` events after position `after` whose type is one of `names`:
    (position, stream id, version, topic, state), in log order."""
    # Binary results: bytea arrives as bytes, not as hex text to decode.
    return conn.execute(_AFTER, (after, names, limit), binary=True).fetchall()


def stored_position(conn: psycopg.Connection[Any], name: str) -> int:
    """`name`'s position; creates its row at 0 the first time."""
    conn.execute(
        "INSERT INTO tracking (application_name, notification_id) VALUES (%s, 0)"
        " ON CONFLICT (application_name) DO NOTHING",
        (name,),
    )
    row = conn.execute(
        "SELECT notification_id FROM tracking WHERE application_name = %s", (name,)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def read_position(conn: psycopg.Connection[Any], name: str) -> int:
    """`name`'s position, 0 before it has one; only reads, so that a repeatable-read
    transaction never conflicts with the projection moving it."""
    row = conn.execute(
        "SELECT notification_id FROM tracking WHERE application_name = %s", (name,)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def save_position(conn: psycopg.Connection[Any], name: str, position: int) -> None:
    conn.execute(
        "INSERT INTO tracking (application_name, notification_id) VALUES (%s, %s)"
        " ON CONFLICT (application_name) DO UPDATE SET notification_id = EXCLUDED.notification_id",
        (name, position),
    )


def advance(conn: psycopg.Connection[Any], name: str, old: int, new: int) -> bool:
    """Move `name` from `old` to `new`; False if it was not at `old` any more."""
    cursor = conn.execute(
        "UPDATE tracking SET notification_id = %s"
        " WHERE application_name = %s AND notification_id = %s",
        (new, name, old),
    )
    return cursor.rowcount == 1


def lag(database_url: str, name: str) -> tuple[int, int]:
    """(`name`'s position, the newest position in the log)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"  # noqa: S608
        ).fetchone()
        return stored_position(conn, name), int(row[0]) if row else 0


LAG_COUNTED = 1_000_000  # a follower further behind than this shows this many


def follower_lag(
    conn: psycopg.Connection[Any], name: str, names: list[str] | None
) -> tuple[int, int, float]:
    """Where follower `name` stands: its position, how many of the events it handles (of
    types `names`; None: all) wait after it (at most LAG_COUNTED), and the age in seconds
    of the oldest of them (0 when none waits)."""
    # Read only: a scrape or a health check must not create a follower's row.
    row = conn.execute(
        "SELECT notification_id FROM tracking WHERE application_name = %s", (name,)
    ).fetchone()
    position = int(row[0]) if row and row[0] is not None else 0
    kinds = "" if names is None else " AND split_part(topic, '@', 1) = ANY(%(names)s)"
    params = {"after": position, "names": names, "cap": LAG_COUNTED}
    waiting = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {EVENTS_TABLE}"  # noqa: S608
        f" WHERE notification_id > %(after)s{kinds} LIMIT %(cap)s) AS w",
        params,
    ).fetchone()
    oldest = conn.execute(
        f"SELECT extract(epoch FROM clock_timestamp() - recorded_at) FROM {EVENTS_TABLE}"  # noqa: S608
        f" WHERE notification_id > %(after)s{kinds} ORDER BY notification_id LIMIT 1",
        params,
    ).fetchone()
    age = float(oldest[0]) if oldest and oldest[0] is not None else 0.0
    return position, int(waiting[0]) if waiting else 0, max(age, 0.0)
