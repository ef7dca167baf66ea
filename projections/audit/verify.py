"""`herald projections verify audit`: replay the log into a scratch audit log and compare.

Inside one repeatable-read transaction the projection's position and the live rows are one
consistent state (the projector writes both in one transaction); the replay runs the
projection's own code up to that position into a temporary table of the same shape, which
shadows the live one for the rest of the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.tracking import stored_position
from projections.audit.entries import entries
from projections.audit.projector import NAME, audited_after, write
from projections.comparison import Comparison, VerifyReport, table_digest

_ROWS = "SELECT * FROM {schema}.audit_log"
SHOWN = 10

Progress = Callable[[int, int], None]


def verify(database_url: str, codec: EventCodec, progress: Progress | None = None) -> VerifyReport:
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        position = stored_position(conn, NAME)
        live_schema = _schema_of_audit_log(conn)
        live = table_digest(conn, live_schema, _ROWS)
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
        replayed = table_digest(conn, "pg_temp", _ROWS)
        differing = _differing(conn, live_schema) if live != replayed else []
        conn.rollback()
    return VerifyReport(position, 0, [Comparison("audit_log", live, replayed, differing)])


def _schema_of_audit_log(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = 'audit_log' AND c.relkind = 'r' AND n.nspname NOT LIKE 'pg_temp%%'"
    ).fetchone()
    return str(row[0]) if row else "public"


def _differing(conn: psycopg.Connection[Any], live: str) -> list[str]:
    """A few entries that are not the same, field for field, in both."""
    query = sql.SQL(
        "SELECT entry_id FROM (SELECT * FROM {live}.audit_log"
        " EXCEPT SELECT * FROM pg_temp.audit_log) missing"
        " UNION SELECT entry_id FROM (SELECT * FROM pg_temp.audit_log"
        " EXCEPT SELECT * FROM {live}.audit_log) extra LIMIT %s"
    ).format(live=sql.Identifier(live))
    return [f"entry {row[0]}" for row in conn.execute(query, (SHOWN,)).fetchall()]
