"""`herald projections rebuild notifications`: replay into a shadow and swap it in.

The whole log is replayed into a shadow, the replay catches up while the log grows, and
then, in one transaction holding the live tables' locks, the last events are applied and
the shadow swapped in. Readers see the old tables until that commit and the new ones after
it, never a half-built model. The Redis models are rebuilt from the new tables afterwards.
"""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

import psycopg
import redis
from psycopg import sql

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.tracking import save_position
from infrastructure.redis_keys import RedisKeys
from projections.notifications.projector import NAME
from projections.notifications.redis_models import rebuild_redis
from projections.notifications.shadow import (
    TABLES,
    VIEWS,
    Progress,
    count_events,
    head,
    live_schema,
    quiet,
    replay,
    shadow,
)

CATCH_UP_UNTIL = 1000  # events behind the head at which a rebuild takes the locks and swaps


def rebuild(
    database_url: str,
    codec: EventCodec,
    names: list[str],
    progress: Progress = quiet,
    redis_target: tuple[str, str] | None = None,
) -> int:
    """Rebuild the SQL read models from the log and swap them in, then the Redis models
    from them when `redis_target` (URL, namespace) is given; returns the position."""
    seen: Counter[tuple[str, str]] = Counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        live = live_schema(conn)
        target = head(conn)
        total = count_events(conn, 0, target, names)
        with shadow(conn, "herald_rebuild") as schema:
            position = replay(
                conn,
                codec,
                names,
                after=0,
                upto=target,
                progress=progress,
                total=total,
                seen=seen,
            )
            # Catch up outside the locks while the log keeps growing fast.
            while head(conn) - position > CATCH_UP_UNTIL:
                target = head(conn)
                done = total
                total += count_events(conn, position, target, names)
                position = replay(
                    conn,
                    codec,
                    names,
                    after=position,
                    upto=target,
                    progress=progress,
                    done=done,
                    total=total,
                    seen=seen,
                )
            with conn.transaction():
                _lock(conn, live)
                target = head(conn)
                position = replay(conn, codec, names, after=position, upto=target, seen=seen)
                _swap(conn, live, schema)
                save_position(conn, NAME, position)
            progress(total, total)
        if redis_target is not None:
            client = redis.Redis.from_url(redis_target[0])
            try:
                rebuild_redis(conn, client, RedisKeys(redis_target[1]), seen)
            finally:
                client.close()
        return position


def _lock(conn: psycopg.Connection[Any], live: str) -> None:
    conn.execute(
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL(", ").join(sql.Identifier(live, t) for t in TABLES)
        )
    )


def _swap(conn: psycopg.Connection[Any], live: str, schema: str) -> None:
    """Retire the live tables and move the shadow's in, views rebuilt on them."""
    definitions = {
        name: conn.execute("SELECT pg_get_viewdef(%s::regclass)", (f"{live}.{name}",)).fetchone()
        for name in VIEWS
    }
    names = _index_names(conn, live, schema)
    retired = f"herald_retired_{secrets.token_hex(4)}"
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(retired)))
    for name in VIEWS:
        conn.execute(sql.SQL("DROP VIEW {}").format(sql.Identifier(live, name)))
    for table in TABLES:
        conn.execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier(live, table), sql.Identifier(retired)
            )
        )
        conn.execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier(schema, table), sql.Identifier(live)
            )
        )
    for shadow_name, live_name in names.items():
        if shadow_name != live_name:
            conn.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(live, shadow_name), sql.Identifier(live_name)
                )
            )
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(live)))
    for name, definition in definitions.items():
        assert definition is not None  # noqa: S101 - the view exists
        conn.execute(
            sql.SQL("CREATE VIEW {} AS {}").format(
                sql.Identifier(live, name), sql.SQL(definition[0].rstrip().rstrip(";"))
            )
        )
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(retired)))


def _index_names(conn: psycopg.Connection[Any], live: str, schema: str) -> dict[str, str]:
    """Shadow index name to the live index with the same definition, so that a swap keeps the
    names migrations refer to."""

    def definitions(where: str) -> dict[str, str]:
        rows = conn.execute(
            "SELECT indexname, tablename || split_part(indexdef, ' USING ', 2) FROM pg_indexes"
            " WHERE schemaname = %s AND tablename = ANY(%s)",
            (where, list(TABLES)),
        ).fetchall()
        return {str(definition): str(name) for name, definition in rows}

    live_names = definitions(live)
    return {name: live_names[d] for d, name in definitions(schema).items() if d in live_names}
