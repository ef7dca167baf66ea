"""`herald projections verify audit`: replay the log into a scratch audit log and compare.

Inside one repeatable-read transaction the projection's position and the live rows are one
consistent state (the projector writes both in one transaction); the replay runs the
projection's own code up to that position into a temporary table of the same shape, which
shadows the live one for the rest of the transaction.

The audit log outlives the events it was made from: archival removes events past their
retention, and the entries they made stay. Entries that begin at or before the newest
removed position are therefore compared one way only: each the replay makes must be live.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.tracking import EVENTS_REMOVED_THROUGH, read_position
from projections.audit.entries import entries
from projections.audit.projector import NAME, audited_after, write
from projections.comparison import Comparison, VerifyReport, table_digest

_ROWS = "SELECT * FROM {schema}.audit_log WHERE first_position > %s"
SHOWN = 10

Progress = Callable[[int, int], None]


def verify(database_url: str, codec: EventCodec, progress: Progress | None = None) -> VerifyReport:
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        position = read_position(conn, NAME)
        horizon = read_position(conn, EVENTS_REMOVED_THROUGH)
        live_schema = _schema_of_audit_log(conn)
        live = table_digest(conn, live_schema, _ROWS, (horizon,))
        conn.execute(
            sql.SQL("CREATE TEMPORARY TABLE audit_log (LIKE {}.audit_log INCLUDING ALL)").format(
                sql.Identifier(live_schema)
            )
        )
        after = 0
        while after < position:
            logged, after_round = audited_after(conn, codec, after, position)
            write(conn, entries(logged))
            if after_round == after:
                break
            after = after_round
            if progress is not None:
                progress(after, position)
        replayed = table_digest(conn, "pg_temp", _ROWS, (horizon,))
        differing = _differing(conn, live_schema, horizon) if live != replayed else []
        differing += _missing_before(conn, live_schema, horizon)
        outlived = _outlived(conn, live_schema, horizon)
        conn.rollback()
    comparison = Comparison("audit_log", live, replayed, differing)
    return VerifyReport(position, 0, [comparison], outlived=outlived)


def _schema_of_audit_log(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = 'audit_log' AND c.relkind = 'r' AND n.nspname NOT LIKE 'pg_temp%%'"
    ).fetchone()
    return str(row[0]) if row else "public"


def _differing(conn: psycopg.Connection[Any], live: str, horizon: int) -> list[str]:
    """A few entries after the horizon that are not the same, field for field, in both."""
    query = sql.SQL(
        "SELECT entry_id FROM (SELECT * FROM {live}.audit_log WHERE first_position > %(h)s"
        " EXCEPT SELECT * FROM pg_temp.audit_log WHERE first_position > %(h)s) missing"
        " UNION SELECT entry_id FROM (SELECT * FROM pg_temp.audit_log"
        " WHERE first_position > %(h)s"
        " EXCEPT SELECT * FROM {live}.audit_log WHERE first_position > %(h)s) extra"
        " LIMIT %(shown)s"
    ).format(live=sql.Identifier(live))
    rows = conn.execute(query, {"h": horizon, "shown": SHOWN}).fetchall()
    return [f"entry {row[0]}" for row in rows]


def _missing_before(conn: psycopg.Connection[Any], live: str, horizon: int) -> list[str]:
    """Entries up to the horizon that the replay makes and the live log lacks."""
    query = sql.SQL(
        "SELECT r.entry_id FROM pg_temp.audit_log r WHERE r.first_position <= %s"
        " AND NOT EXISTS (SELECT 1 FROM {live}.audit_log l WHERE l.entry_id = r.entry_id"
        "  AND l.action = r.action AND l.actor IS NOT DISTINCT FROM r.actor"
        "  AND l.count >= r.count)"
        " LIMIT %s"
    ).format(live=sql.Identifier(live))
    rows = conn.execute(query, (horizon, SHOWN)).fetchall()
    return [f"entry {row[0]} (before the retention horizon)" for row in rows]


def _outlived(conn: psycopg.Connection[Any], live: str, horizon: int) -> int:
    """Live entries up to the horizon: kept, and no longer all replayable."""
    query = sql.SQL("SELECT count(*) FROM {live}.audit_log WHERE first_position <= %s").format(
        live=sql.Identifier(live)
    )
    row = conn.execute(query, (horizon,)).fetchone()
    return int(row[0]) if row else 0
