"""The Redis read models built from the SQL ones.

Two callers: `herald projections rebuild notifications`, once its new SQL tables are swapped
in; and the projector, whenever it finds Redis has lost its models: Redis restarted empty,
or was out of reach while the SQL models moved on without it.

The projection's offsets hash in Redis doubles as the mark that the models are whole: the
projector's script writes nothing into a Redis where it is missing, and `repair` writes it
last, after everything else, with PostgreSQL's offsets and the time of the repair.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
import redis
from psycopg import sql

from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.redis_keys import RECENT_KEPT, RedisKeys
from projections.notifications.live import REPAIRED_AT
from projections.notifications.refill import HASHED_COLUMNS, HashRefill

# Every event of each tenant's notifications still in the log, by kind: the dashboard's
# `events:` counters. A notification is the tenant's while in the view or archived (a
# restored one is in the view again, and counted there).
_EVENT_COUNTS = (
    "SELECT owner.tenant_id, split_part(e.topic, '@', 1), count(*)"  # noqa: S608
    f" FROM {EVENTS_TABLE} e JOIN ("
    " SELECT notification_id, tenant_id FROM notification_view"
    " UNION ALL SELECT notification_id, tenant_id FROM archived_notifications"
    " WHERE restored_position IS NULL) owner ON owner.notification_id = e.originator_id"
    " WHERE split_part(e.topic, '@', 1) = ANY(%s) GROUP BY 1, 2"
)


@dataclass(frozen=True)
class Repaired:
    hashes: int  # status hashes written
    offsets: dict[int, int]  # partition to the next offset, as PostgreSQL has them


def event_counts(conn: psycopg.Connection[Any], names: list[str]) -> Counter[tuple[str, str]]:
    """(tenant, event name) to how many such events the log holds."""
    rows = conn.execute(_EVENT_COUNTS, (names,))
    return Counter({(tenant, name): int(count) for tenant, name, count in rows})


def repair(
    conn: psycopg.Connection[Any],
    client: redis.Redis,
    keys: RedisKeys,
    *,
    names: list[str],
    projection: str,
    topic: str,
) -> Repaired:
    """Rebuild the Redis models from PostgreSQL and mark them whole. The caller applies
    nothing meanwhile, so the SQL models and their offsets hold still while read."""
    hashes = rebuild_redis(conn, client, keys, event_counts(conn, names))
    offsets = {
        int(partition): int(offset)
        for partition, offset in conn.execute(
            "SELECT partition, next_offset FROM projection_offsets"
            " WHERE projection = %s AND topic = %s",
            (projection, topic),
        )
    }
    mark: dict[str, str] = {REPAIRED_AT: datetime.now(UTC).isoformat()}
    mark |= {str(partition): str(offset) for partition, offset in offsets.items()}
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.offsets(projection))
    pipe.hset(keys.offsets(projection), mapping=cast("Any", mark))
    pipe.execute()
    return Repaired(hashes, offsets)


def rebuild_redis(
    conn: psycopg.Connection[Any],
    client: redis.Redis,
    keys: RedisKeys,
    seen: Counter[tuple[str, str]],
) -> int:
    """The Redis models from the SQL ones: status hashes refilled unless the projector has
    already written a newer version; every per-tenant key built aside and renamed over the
    old one, so a reader sees the old key or the new one, never a half-built one. `seen`
    gives the dashboard's event counters. Returns how many status hashes were written."""
    refill = HashRefill(client, keys)
    written = 0
    with conn.cursor(name="herald_rebuild_redis") as cursor, conn.transaction():
        cursor.execute(sql.SQL("SELECT {} FROM notification_view").format(HASHED_COLUMNS))
        while rows := cursor.fetchmany(2000):
            written += refill.rows(rows)
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
    return written
