"""The notifications projection: follows the event store's log and keeps `notification_view`.

Each round's view writes and the projection's new position commit in one transaction, so a
crash or a restart repeats nothing and skips nothing. This first version reads the log
from PostgreSQL directly, which is also how it catches up after Kafka lost data; consuming
`herald.notifications.v1` for the live tail comes next.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.eventstore.tracking import advance, read_after, stored_position
from infrastructure.log import get_logger
from projections.notifications.view import write_for

log = get_logger(__name__)

NAME = "projection:notifications"
BATCH = 5000
IDLE_WAIT_S = 0.5


class NotificationsProjector:
    def __init__(self, database_url: str, codec: EventCodec, event_names: Sequence[str]) -> None:
        self._database_url = database_url
        self._codec = codec
        self._names = list(event_names)
        self.applied = 0

    def run(self, stop: threading.Event) -> None:
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            conn.execute(f"LISTEN {EVENTS_TABLE}")
            position = stored_position(conn, NAME)
            log.info("projection following the log", projection=NAME, position=position)
            while not stop.is_set():
                rows = read_after(conn, position, self._names, BATCH)
                if not rows:
                    for _ in conn.notifies(timeout=IDLE_WAIT_S, stop_after=1):
                        pass
                    # Idle is when a reset (to rebuild the view) is noticed.
                    position = stored_position(conn, NAME)
                    continue
                position = self._apply(conn, position, rows)

    def _apply(self, conn: psycopg.Connection[Any], position: int, rows: list[Any]) -> int:
        last = int(rows[-1][0])
        kept = False
        with conn.transaction():
            with conn.pipeline():
                for at, stream_id, version, topic, state in rows:
                    event = self._codec.decode(topic, state)
                    write = write_for(event, stream_id, version, at)
                    if write is not None:
                        conn.execute(*write)
            if not advance(conn, NAME, position, last):
                raise psycopg.Rollback  # keep nothing of this round
            kept = True
        if not kept:  # another copy moved the position, or it was reset: go from there
            return stored_position(conn, NAME)
        self.applied += len(rows)
        return last
