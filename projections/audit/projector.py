"""The audit projection: follows the event log itself, round by round, into `audit_log`.

It reads the log rather than Kafka because identity and session events, which the audit
trail needs most, are never published. Each round reads the next events after its
position, keeps the audited ones, and writes their entries and the new position in one
transaction, holding its tracking row's lock: a second projector process waits instead of
writing the same entries, and a crash repeats nothing.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from infrastructure.eventstore import meta
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.eventstore.tracking import AUDIT_PROJECTION, save_position, stored_position
from infrastructure.log import get_logger
from infrastructure.metrics import PROJECTION_EVENTS
from projections.audit.entries import Entry, Logged, audited, entries

log = get_logger(__name__)

NAME = AUDIT_PROJECTION
BATCH = 5000
IDLE_WAIT_S = 0.5

_READ = (
    "SELECT notification_id, originator_id, topic, state, meta"  # noqa: S608 - our table
    f" FROM {EVENTS_TABLE} WHERE notification_id > %s AND notification_id <= %s"
    " ORDER BY notification_id LIMIT %s"
)
_LOCK_POSITION = "SELECT notification_id FROM tracking WHERE application_name = %s FOR UPDATE"
_WRITE = """
INSERT INTO audit_log AS a (
    entry_id, tenant_id, at, action, actor, actor_kind, actor_roles, ip, user_agent,
    request_id, subject, count, details, first_position, last_position
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (entry_id) DO UPDATE
SET count = a.count + excluded.count, last_position = excluded.last_position,
    details = a.details || excluded.details
WHERE a.last_position < excluded.first_position
"""
NO_END = 2**63 - 1


def audited_after(
    conn: psycopg.Connection[Any], codec: EventCodec, after: int, upto: int = NO_END
) -> tuple[list[Logged], int]:
    """The audited events among the next BATCH after `after` (up to `upto`), and the last
    position read; `after` itself when there was nothing more."""
    rows = conn.execute(_READ, (after, upto, BATCH), binary=True).fetchall()
    kept = []
    for position, stream_id, topic, state, raw_meta in rows:
        name = topic.partition("@")[0]
        raw = bytes(raw_meta) if raw_meta is not None else None
        if audited(name, meta.decode(raw)):  # by roles and names, which are never sealed
            kept.append((position, stream_id, name, topic, state, raw))
    events = codec.decode_many([(topic, state) for _, _, _, topic, state, _ in kept])
    found = [
        Logged(position, stream_id, name, event, codec.decode_meta(raw))
        for (position, stream_id, name, _, _, raw), event in zip(kept, events, strict=True)
    ]
    return found, int(rows[-1][0]) if rows else after


def write(conn: psycopg.Connection[Any], written: list[Entry]) -> None:
    """Insert entries, or add to one a command began in an earlier round."""
    if not written:
        return
    with conn.cursor() as cursor:
        cursor.executemany(
            _WRITE,
            [
                (
                    e.entry_id,
                    e.tenant_id,
                    e.at,
                    e.action,
                    e.actor,
                    e.actor_kind,
                    e.actor_roles,
                    e.ip,
                    e.user_agent,
                    e.request_id,
                    e.subject,
                    e.count,
                    Jsonb(e.details),
                    e.first_position,
                    e.last_position,
                )
                for e in written
            ],
        )


def project_round(
    conn: psycopg.Connection[Any], codec: EventCodec, name: str = NAME, upto: int = NO_END
) -> int:
    """One round in one transaction; returns how far it got (its old position if idle)."""
    stored_position(conn, name)  # the row exists before it is locked
    with conn.transaction():
        row = conn.execute(_LOCK_POSITION, (name,)).fetchone()
        position = int(row[0]) if row and row[0] is not None else 0
        logged, last = audited_after(conn, codec, position, upto)
        if last > position:
            write(conn, entries(logged))
            save_position(conn, name, last)
    if last > position:
        PROJECTION_EVENTS.labels("audit").inc(last - position)  # positions passed
    return last


class AuditProjection:
    def __init__(self, database_url: str, codec: EventCodec) -> None:
        self._database_url = database_url
        self._codec = codec

    def run(self, stop: threading.Event) -> None:
        """Follow the log until `stop` is set; a failure is logged and the round tried again."""
        while not stop.is_set():
            try:
                with psycopg.connect(self._database_url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {EVENTS_TABLE}")
                    log.info("audit projection following the log")
                    self._follow(conn, stop)
            except psycopg.OperationalError as exc:
                log.warning("audit projection waiting for the database", error=str(exc))
                stop.wait(1.0)

    def _follow(self, conn: psycopg.Connection[Any], stop: threading.Event) -> None:
        position = stored_position(conn, NAME)
        while not stop.is_set():
            reached = project_round(conn, self._codec)
            if reached == position:
                # Writers NOTIFY on commit; the timeout covers a missed one and lets `stop` in.
                for _ in conn.notifies(timeout=IDLE_WAIT_S, stop_after=1):
                    pass
            position = reached
