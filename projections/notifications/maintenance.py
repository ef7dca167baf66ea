"""Replaying the log into shadow tables: `herald projections verify` and `rebuild`.

A shadow is a schema holding empty copies of the SQL read-model tables. With the connection's
search path set to the shadow first, the projection's own SQL (`view.apply`) writes there, so
a replay exercises exactly the code the live projector runs.

- `verify` replays up to the live projection's position and compares order-independent
  digests of the live tables, the shadow and the Redis status hashes. Notifications that
  changed after that position are left out of the comparison and counted.
- `rebuild` replays the whole log into a shadow, catches up, and then, in one transaction
  holding the live tables' locks, applies the last events and swaps the shadow in. Readers
  see the old tables until that commit and the new ones after it, never a half-built model.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import psycopg
import redis
from psycopg import sql

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.eventstore.tracking import read_after, save_position, stored_position
from infrastructure.redis_keys import RECENT_KEPT, RedisKeys
from projections.notifications import view
from projections.notifications.changes import change_for
from projections.notifications.live import text
from projections.notifications.projector import NAME
from projections.notifications.view import Applied

BATCH = 5000
TABLES = ("notification_view", "notification_attempts", "notification_stats")
VIEWS = ("recipient_inbox", "dead_letters")
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
SHOWN = 10  # differing rows a report lists
CATCH_UP_UNTIL = 1000  # events behind the head at which a rebuild takes the locks and swaps

Progress = Callable[[int, int], None]  # (events replayed, events to replay)


def _quiet(_done: int, _total: int) -> None:
    return None


@dataclass
class Digest:
    rows: int
    digest: int

    def __str__(self) -> str:
        return f"{self.rows} rows, digest {self.digest:x}"


@dataclass
class Comparison:
    name: str
    live: Digest | None
    replayed: Digest | None
    differing: list[str] = field(default_factory=list)  # a few keys that differ

    @property
    def equal(self) -> bool:
        return self.live is None or (self.live == self.replayed and not self.differing)


@dataclass
class VerifyReport:
    position: int
    changed_since: int  # notifications left out: they changed after `position`
    comparisons: list[Comparison]

    @property
    def ok(self) -> bool:
        return all(c.equal for c in self.comparisons)


def head(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"  # noqa: S608
    ).fetchone()
    return int(row[0]) if row else 0


def _count_events(conn: psycopg.Connection[Any], after: int, upto: int, names: list[str]) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM {EVENTS_TABLE} WHERE notification_id > %s"  # noqa: S608
        " AND notification_id <= %s AND split_part(topic, '@', 1) = ANY(%s)",
        (after, upto, names),
    ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def shadow(conn: psycopg.Connection[Any], name: str | None = None) -> Iterator[str]:
    """A schema with empty copies of the read-model tables, first on the search path."""
    live = _live_schema(conn)
    schema = name or f"herald_shadow_{secrets.token_hex(4)}"
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for table in TABLES:
        conn.execute(
            sql.SQL("CREATE TABLE {}.{} (LIKE {}.{} INCLUDING ALL)").format(
                sql.Identifier(schema),
                sql.Identifier(table),
                sql.Identifier(live),
                sql.Identifier(table),
            )
        )
    conn.execute(
        sql.SQL("SET search_path TO {}, {}").format(sql.Identifier(schema), sql.Identifier(live))
    )
    try:
        yield schema
    finally:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(live)))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _live_schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = 'notification_view'::regclass"
    ).fetchone()
    assert row is not None  # noqa: S101 - the migration made it
    return str(row[0])


def replay(
    conn: psycopg.Connection[Any],
    codec: EventCodec,
    names: list[str],
    *,
    after: int,
    upto: int,
    progress: Progress = _quiet,
    done: int = 0,
    total: int = 0,
    seen: Counter[tuple[str, str]] | None = None,
) -> int:
    """Apply the log's events in (after, upto] through the search path; returns `upto`.
    `seen` counts the events by tenant and type, for the dashboard counters."""
    position = after
    while position < upto:
        rows = [r for r in read_after(conn, position, names, BATCH) if r[0] <= upto]
        if not rows:
            break
        items = []
        for at_position, stream_id, version, topic, state in rows:
            event = codec.decode(topic, state)
            items.append(Applied(change_for(event), stream_id, version, at_position, event.at))
            if seen is not None:
                seen[(getattr(event, "tenant_id", ""), type(event).__name__)] += 1
        items.sort(key=lambda item: (item.stream_id.int, item.version))
        with conn.transaction():
            view.apply(conn, items)
        position = int(rows[-1][0])
        done += len(rows)
        progress(done, max(done, total))
    return upto


def _digest(conn: psycopg.Connection[Any], schema: str, query: str, exclude: list[Any]) -> Digest:
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 15))::bit(60)::bigint), 0)"
            " FROM ({}) t"
        ).format(sql.SQL(query).format(schema=sql.Identifier(schema))),
        _params(query, exclude),
    ).fetchone()
    assert row is not None  # noqa: S101 - an aggregate always returns a row
    return Digest(int(row[0]), int(row[1]))


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
    progress: Progress = _quiet,
) -> VerifyReport:
    with psycopg.connect(database_url, autocommit=True) as conn:
        position = stored_position(conn, NAME)
        total = _count_events(conn, 0, position, names)
        live = _live_schema(conn)
        with shadow(conn) as schema:
            replay(conn, codec, names, after=0, upto=position, progress=progress, total=total)
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
                    conn, "notification_view", _VIEW_ROWS, live=live, schema=schema, exclude=changed
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
                comparisons.append(_compare_redis(conn, redis_url, namespace, schema, changed))
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
) -> Comparison:
    """Each notification's Redis status hash against the replayed view row."""
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
    try:
        for start in range(0, len(replayed), 1000):
            chunk = replayed[start : start + 1000]
            pipe = client.pipeline(transaction=False)
            for row in chunk:
                pipe.hmget(keys.status(row[0]), *HASH_FIELDS)
            for row, stored in zip(chunk, pipe.execute(), strict=True):
                expected = "|".join(_normal(v) for v in row[1:])
                found = "|".join(_normal(v) for v in stored)
                replayed_total += _hash(expected)
                live_total += _hash(found)
                if expected != found and len(differing) < SHOWN:
                    differing.append(f"{row[0]}: redis has {found!r}, replay {expected!r}")
    finally:
        client.close()
    count = len(replayed)
    return Comparison(
        "redis status hashes",
        Digest(count, live_total & (2**64 - 1)),
        Digest(count, replayed_total & (2**64 - 1)),
        differing,
    )


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


def rebuild(
    database_url: str,
    codec: EventCodec,
    names: list[str],
    progress: Progress = _quiet,
    redis_target: tuple[str, str] | None = None,
) -> int:
    """Rebuild the SQL read models from the log and swap them in, then the Redis models
    from them when `redis_target` (URL, namespace) is given; returns the position."""
    seen: Counter[tuple[str, str]] = Counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        live = _live_schema(conn)
        target = head(conn)
        total = _count_events(conn, 0, target, names)
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
                total += _count_events(conn, position, target, names)
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


_REFILL = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
_HASHED = [name for name, _ in view.COLUMNS if name not in {"notification_id", "created_position"}]


def rebuild_redis(
    conn: psycopg.Connection[Any],
    client: redis.Redis,
    keys: RedisKeys,
    seen: Counter[tuple[str, str]],
) -> None:
    """The Redis models from the SQL ones: status hashes refilled unless the projector has
    already written a newer version; every per-tenant key built aside and renamed over the
    old one, so a reader sees the old key or the new one, never a half-built one."""
    refill = client.register_script(_REFILL)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in ["notification_id", *_HASHED])
    with conn.cursor(name="herald_rebuild_redis") as cursor, conn.transaction():
        cursor.execute(sql.SQL("SELECT {} FROM notification_view").format(columns))
        while rows := cursor.fetchmany(2000):
            pipe = client.pipeline(transaction=False)
            for row in rows:
                pairs = [
                    v
                    for name, value in zip(_HASHED, row[1:], strict=True)
                    for v in (name, text(value))
                ]
                version = row[1 + _HASHED.index("version")]
                refill(keys=[keys.status(row[0])], args=[version, *pairs], client=pipe)
            pipe.execute()
    built: dict[str, dict[str, int]] = {}
    for tenant, status, count in conn.execute(
        "SELECT tenant_id, status, count(*) FROM notification_view GROUP BY 1, 2"
    ).fetchall():
        built.setdefault(keys.dashboard(tenant), {})[f"status:{status}"] = count
    for (tenant, name), count in seen.items():
        built.setdefault(keys.dashboard(tenant), {})[f"events:{name}"] = count
    for tenant, recipient, count in conn.execute(
        "SELECT tenant_id, recipient, count(*) FROM notification_view"
        " WHERE status IN ('sent', 'delivered') GROUP BY 1, 2"
    ).fetchall():
        built.setdefault(keys.unread(tenant), {})[recipient] = count
    recent: dict[str, dict[str, int]] = {}
    for tenant, recipient, notification_id, requested_at in conn.execute(
        "SELECT tenant_id, recipient, notification_id, requested_at FROM ("
        " SELECT *, row_number() OVER (PARTITION BY tenant_id, recipient"
        " ORDER BY requested_at DESC) AS rank FROM notification_view"
        " WHERE status <> 'erased') newest WHERE rank <= %s",
        (RECENT_KEPT,),
    ).fetchall():
        score = int(requested_at.timestamp() * 1000)
        recent.setdefault(keys.recent(tenant, recipient), {})[str(notification_id)] = score
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
