"""`herald projections verify notifications`: replay the log into a shadow and compare.

The replay runs up to the live projection's position; then order-independent digests of
the live tables, the shadow and the Redis status hashes are compared. Notifications that
changed after that position are left out of the comparison and counted: those the live
view shows past it when the replay ends, and those whose Redis hash is past it when read
(the projector goes on meanwhile, and writes Redis alongside PostgreSQL).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, cast

import psycopg
import redis
from psycopg import sql

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.tracking import stored_position
from infrastructure.redis_keys import RedisKeys
from projections.comparison import Comparison, Digest, VerifyReport, table_digest
from projections.notifications.projector import NAME
from projections.notifications.shadow import (
    Progress,
    count_events,
    live_schema,
    quiet,
    replay,
    shadow,
)

# Compared with Redis: the status hash fields that mirror notification_view columns.
HASH_FIELDS = (
    "tenant_id",
    "channel",
    "recipient",
    "priority",
    "status",
    "attempts",
    "last_error",
    "provider",
    "provider_message_id",
    "send_at",
    "requested_at",
    "updated_at",
    "position",
    "version",
)
_POSITION = HASH_FIELDS.index("position")
SHOWN = 10  # differing rows a report lists


def _digest(conn: psycopg.Connection[Any], schema: str, query: str, exclude: list[Any]) -> Digest:
    return table_digest(conn, schema, query, _params(query, exclude))


_VIEW_ROWS = "SELECT * FROM {schema}.notification_view WHERE notification_id <> ALL(%s::uuid[])"
_ATTEMPT_ROWS = (
    "SELECT * FROM {schema}.notification_attempts WHERE notification_id <> ALL(%s::uuid[])"
)
_STATS_ROWS = "SELECT * FROM {schema}.notification_stats WHERE count <> 0"


def verify(
    database_url: str,
    redis_url: str | None,
    *,
    namespace: str,
    codec: EventCodec,
    names: list[str],
    progress: Progress = quiet,
) -> VerifyReport:
    with psycopg.connect(database_url, autocommit=True) as conn:
        position = stored_position(conn, NAME)
        total = count_events(conn, 0, position, names)
        live = live_schema(conn)
        with shadow(conn) as schema:
            replay(conn, codec, names, after=0, upto=position, progress=progress, total=total)
            # One snapshot of the live tables for the list of what moved and the comparisons.
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                changed = [
                    r[0]
                    for r in conn.execute(
                        sql.SQL(
                            "SELECT notification_id FROM {}.notification_view WHERE position > %s"
                        ).format(sql.Identifier(live)),
                        (position,),
                    ).fetchall()
                ]
                comparisons = [
                    _compare(
                        conn,
                        "notification_view",
                        _VIEW_ROWS,
                        live=live,
                        schema=schema,
                        exclude=changed,
                    ),
                    _compare(
                        conn,
                        "notification_attempts",
                        _ATTEMPT_ROWS,
                        live=live,
                        schema=schema,
                        exclude=changed,
                    ),
                ]
                if not changed:  # the totals can be compared only while nothing moves
                    comparisons.append(
                        _compare(
                            conn,
                            "notification_stats",
                            _STATS_ROWS,
                            live=live,
                            schema=schema,
                            exclude=[],
                        )
                    )
            if redis_url is not None:
                hashes, moved = _compare_redis(
                    conn, redis_url, namespace, schema, changed, upto=position
                )
                comparisons.append(hashes)
                changed += moved
                if not changed:
                    comparisons.append(_compare_dashboards(conn, redis_url, namespace, schema))
        return VerifyReport(position, len(changed), comparisons)


def _compare(
    conn: psycopg.Connection[Any],
    name: str,
    query: str,
    *,
    live: str,
    schema: str,
    exclude: list[Any],
) -> Comparison:
    ours, theirs = _digest(conn, live, query, exclude), _digest(conn, schema, query, exclude)
    differing: list[str] = []
    if ours != theirs:
        live_rows = {str(r) for r in _rows(conn, live, query, exclude)}
        replayed_rows = {str(r) for r in _rows(conn, schema, query, exclude)}
        differing = sorted(live_rows ^ replayed_rows)[:SHOWN]
    return Comparison(name, ours, theirs, differing)


def _rows(
    conn: psycopg.Connection[Any], schema: str, query: str, exclude: list[Any]
) -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL(query).format(schema=sql.Identifier(schema)), _params(query, exclude)
    ).fetchall()


def _params(query: str, exclude: list[Any]) -> tuple[Any, ...]:
    return (exclude,) if "%s" in query else ()


def _normal(value: Any) -> str:
    """A field's value, comparable whether it came from SQL or from a Redis hash."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return value.timestamp().hex()
    if isinstance(value, bytes):
        value = value.decode()
    text = str(value)
    try:
        return datetime.fromisoformat(text).timestamp().hex() if "T" in text else text
    except ValueError:
        return text


def _compare_redis(
    conn: psycopg.Connection[Any],
    redis_url: str,
    namespace: str,
    schema: str,
    exclude: list[Any],
    *,
    upto: int,
) -> tuple[Comparison, list[Any]]:
    """Each notification's Redis status hash against the replayed view row, but for hashes
    that have moved past `upto` since the view was read: those are returned."""
    keys = RedisKeys(namespace)
    client = redis.Redis.from_url(redis_url)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in HASH_FIELDS)
    replayed = conn.execute(
        sql.SQL(
            "SELECT notification_id, {} FROM {}.notification_view"
            " WHERE notification_id <> ALL(%s::uuid[])"
        ).format(columns, sql.Identifier(schema)),
        (exclude,),
    ).fetchall()
    live_total = replayed_total = 0
    differing: list[str] = []
    moved: list[Any] = []
    try:
        for start in range(0, len(replayed), 1000):
            chunk = replayed[start : start + 1000]
            pipe = client.pipeline(transaction=False)
            for row in chunk:
                pipe.hmget(keys.status(row[0]), *HASH_FIELDS)
            for row, stored in zip(chunk, pipe.execute(), strict=True):
                at = stored[_POSITION]
                if at is not None and int(at) > upto:
                    moved.append(row[0])
                    continue
                expected = "|".join(_normal(v) for v in row[1:])
                found = "|".join(_normal(v) for v in stored)
                replayed_total += _hash(expected)
                live_total += _hash(found)
                if expected != found and len(differing) < SHOWN:
                    differing.append(f"{row[0]}: redis has {found!r}, replay {expected!r}")
    finally:
        client.close()
    count = len(replayed) - len(moved)
    return Comparison(
        "redis status hashes",
        Digest(count, live_total & (2**64 - 1)),
        Digest(count, replayed_total & (2**64 - 1)),
        differing,
    ), moved


def _compare_dashboards(
    conn: psycopg.Connection[Any], redis_url: str, namespace: str, schema: str
) -> Comparison:
    """Each tenant's `status:*` dashboard counters against the replayed view's counts."""
    keys = RedisKeys(namespace)
    expected: dict[str, dict[str, int]] = {}
    for tenant, status, count in conn.execute(
        sql.SQL(
            "SELECT tenant_id, status, count(*) FROM {}.notification_view GROUP BY 1, 2"
        ).format(sql.Identifier(schema))
    ).fetchall():
        expected.setdefault(keys.dashboard(tenant), {})[status] = int(count)
    client = redis.Redis.from_url(redis_url)
    found: dict[str, dict[str, int]] = {}
    try:
        for key in client.scan_iter(match=keys.dashboard("*"), count=1000):
            counters = cast("dict[bytes, bytes]", client.hgetall(key))
            statuses = {
                name.decode().removeprefix("status:"): int(value)
                for name, value in counters.items()
                if name.startswith(b"status:") and int(value)
            }
            if statuses:
                found[key.decode()] = statuses
    finally:
        client.close()
    differing = [
        f"{key}: redis has {found.get(key)}, replay {expected.get(key)}"
        for key in sorted(set(expected) | set(found))
        if found.get(key) != expected.get(key)
    ][:SHOWN]
    return Comparison(
        "redis dashboard counters",
        Digest(len(found), _hash(_canonical(found))),
        Digest(len(expected), _hash(_canonical(expected))),
        differing,
    )


def _canonical(counters: dict[str, dict[str, int]]) -> str:
    return repr(sorted((key, sorted(values.items())) for key, values in counters.items()))


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
