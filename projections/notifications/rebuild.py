"""`herald projections rebuild notifications`: replay into a shadow and swap it in.

The whole log is replayed into a shadow, the replay catches up while the log grows, and
then, in one transaction holding the live tables' locks, the last events are applied and
the shadow swapped in. Readers see the old tables until that commit and the new ones after
it, never a half-built model. The Redis models are rebuilt from the new tables afterwards.
"""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any, cast

import psycopg
import redis
from psycopg import sql

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.tracking import save_position
from infrastructure.redis_keys import RECENT_KEPT, RedisKeys
from projections.notifications.projector import NAME
from projections.notifications.refill import HASHED_COLUMNS, HashRefill
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


def rebuild_redis(
    conn: psycopg.Connection[Any],
    client: redis.Redis,
    keys: RedisKeys,
    seen: Counter[tuple[str, str]],
) -> None:
    """The Redis models from the SQL ones: status hashes refilled unless the projector has
    already written a newer version; every per-tenant key built aside and renamed over the
    old one, so a reader sees the old key or the new one, never a half-built one."""
    refill = HashRefill(client, keys)
    with conn.cursor(name="herald_rebuild_redis") as cursor, conn.transaction():
        cursor.execute(sql.SQL("SELECT {} FROM notification_view").format(HASHED_COLUMNS))
        while rows := cursor.fetchmany(2000):
            refill.rows(rows)
    built: dict[str, dict[str, int]] = {}
    for tenant, status, count in conn.execute(
        "SELECT tenant_id, status, count(*) FROM notification_view GROUP BY 1, 2"
    ).fetchall():
        built.setdefault(keys.dashboard(tenant), {})[f"status:{status}"] = count
    for (tenant, name), count in seen.items():
        built.setdefault(keys.dashboard(tenant), {})[f"events:{name}"] = count
    for tenant, recipient, count in conn.execute(
        "SELECT tenant_id, encode(recipient_hash, 'hex'), count(*) FROM notification_view"
        " WHERE status IN ('sent', 'delivered') GROUP BY 1, 2"
    ).fetchall():
        built.setdefault(keys.unread(tenant), {})[recipient or ""] = count
    recent: dict[str, dict[str, int]] = {}
    for tenant, recipient, notification_id, requested_at in conn.execute(
        "SELECT tenant_id, encode(recipient_hash, 'hex'), notification_id, requested_at FROM ("
        " SELECT *, row_number() OVER (PARTITION BY tenant_id, recipient_hash"
        " ORDER BY requested_at DESC) AS rank FROM notification_view"
        " WHERE status <> 'erased') newest WHERE rank <= %s",
        (RECENT_KEPT,),
    ).fetchall():
        score = int(requested_at.timestamp() * 1000)
        recent.setdefault(keys.recent(tenant, recipient or ""), {})[str(notification_id)] = score
    pipe = client.pipeline(transaction=False)
    for key, fields in built.items():
        pipe.delete(f"{key}:rebuild")
        pipe.hset(f"{key}:rebuild", mapping=cast("Any", fields))  # redis-py's key type is narrower
        pipe.rename(f"{key}:rebuild", key)
    for key, members in recent.items():
        pipe.delete(f"{key}:rebuild")
        pipe.zadd(f"{key}:rebuild", members)
        pipe.rename(f"{key}:rebuild", key)
    pipe.execute()
    kept = set(built) | set(recent)
    for pattern in ("dashboard:*", "unread:*", "recent:*", "list:*"):
        stale = [
            key
            for key in client.scan_iter(match=f"{keys.prefix}{pattern}", count=1000)
            if key.decode() not in kept
        ]
        for start in range(0, len(stale), 1000):
            client.delete(*stale[start : start + 1000])


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
