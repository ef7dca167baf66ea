"""Appending one event to each of many streams, each only if its stream has not moved.

For decisions taken in bulk from a read model (archival, restore): each was made from a
stream's state at some version, and holds only while the stream is still there. Streams
that moved meanwhile are left out, not failed: their notifications are decided again on the
next run. All of it happens in the caller's transaction, under the same table lock every
append takes, so nothing can be appended between the check and the insert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from domain.events import DomainEvent
from infrastructure.eventstore import meta
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import APPEND_LOCK, EVENTS_TABLE, NOTIFY_APPENDED

# The unnest keeps the given order, so positions follow it.
_APPEND = sql.SQL(
    "INSERT INTO {table} (originator_id, originator_version, topic, state, meta)"
    " SELECT c.stream, c.version, c.topic, c.state, %b"
    " FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
    " WITH ORDINALITY AS c(stream, version, topic, state, n)"
    " WHERE NOT EXISTS (SELECT 1 FROM {table} e"
    "  WHERE e.originator_id = c.stream AND e.originator_version >= c.version)"
    " ORDER BY c.n RETURNING originator_id, notification_id"
).format(table=sql.Identifier(EVENTS_TABLE))


@dataclass(frozen=True)
class NextEvent:
    """`event`, to be recorded as version `version` of `stream_id`: only while no event of
    that version or a later one is there."""

    stream_id: UUID
    version: int
    event: DomainEvent


def append_unless_moved(
    conn: psycopg.Connection[Any], codec: EventCodec, appends: Sequence[NextEvent]
) -> dict[UUID, int]:
    """Append each event whose stream has not moved past it, in the caller's transaction;
    returns the position of each appended one by stream. Events are stored with the
    metadata bound now (see `meta`)."""
    if not appends:
        return {}
    # Before the lock: encoding may make keys.
    about, encoded = codec.encode_all([(a.stream_id, a.event) for a in appends], meta.current())
    conn.execute(APPEND_LOCK)
    rows = conn.execute(
        _APPEND,
        (
            about,
            [a.stream_id for a in appends],
            [a.version for a in appends],
            [topic for topic, _ in encoded],
            [state for _, state in encoded],
        ),
        binary=True,
    ).fetchall()
    if rows:
        conn.execute(NOTIFY_APPENDED)
    return {stream: int(position) for stream, position in rows}
