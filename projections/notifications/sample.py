"""The verify-sample job: replay a random sample of notifications and compare, every night.

A full `herald projections verify` replays the whole log; this looks at a sample, cheaply
enough to run each night. The sampled notifications' events, up to the projection's
position, go through the projection's own code into a shadow (`shadow.py`); each sampled
row of `notification_view` and `notification_attempts` is then compared with its replay.
Notifications that changed after that position are left out. Drift is reported (in the
job's counts and the log, with a few ids), never fixed: `herald projections rebuild` fixes.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.tracking import read_position
from infrastructure.log import get_logger
from projections.notifications.projector import NAME
from projections.notifications.shadow import live_schema, replay_streams, shadow

log = get_logger(__name__)

SHOWN = 10
# Rows of the sampled notifications that differ between two schemas, in either direction.
_DIFFERING = """
SELECT notification_id FROM (
    (SELECT * FROM {a}.{table} WHERE notification_id = ANY(%(ids)s)
     EXCEPT SELECT * FROM {b}.{table} WHERE notification_id = ANY(%(ids)s))
    UNION ALL
    (SELECT * FROM {b}.{table} WHERE notification_id = ANY(%(ids)s)
     EXCEPT SELECT * FROM {a}.{table} WHERE notification_id = ANY(%(ids)s))
) differing
"""


def verify_sample(*, database_url: str, codec: EventCodec, size: int) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        position = read_position(conn, NAME)
        ids = _sample(conn, size, position)
        live = live_schema(conn)
        with shadow(conn) as schema:
            replay_streams(conn, codec, ids, position)
            differing: set[UUID] = set()
            for table in ("notification_view", "notification_attempts"):
                query = sql.SQL(_DIFFERING).format(
                    a=sql.Identifier(live), b=sql.Identifier(schema), table=sql.Identifier(table)
                )
                differing |= {row[0] for row in conn.execute(query, {"ids": ids}).fetchall()}
        conn.rollback()
    if differing:
        shown = sorted(str(i) for i in differing)[:SHOWN]
        log.warning("read models drifted from the log", differing=len(differing), ids=shown)
    return {"position": position, "sampled": len(ids), "differing": len(differing)}


def _sample(conn: psycopg.Connection[Any], size: int, position: int) -> list[UUID]:
    """Up to `size` notifications, at random, whose rows reflect nothing after `position`."""
    rows = conn.execute(
        "SELECT notification_id FROM notification_view WHERE position <= %s"
        " ORDER BY random() LIMIT %s",
        (position, size),
    ).fetchall()
    return [row[0] for row in rows]
