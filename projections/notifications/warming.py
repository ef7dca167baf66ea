"""The warm-read-models job: refill the status hashes of active tenants' newest notifications.

`GET /notifications/{id}` answers from the projector's status hash in Redis, and falls back
to SQL when the hash is gone (Redis restarted, or evicted it). For tenants that requested
notifications in the last day, this looks at their newest notifications and refills every
hash that is missing, from `notification_view`, with the same version guard as a rebuild:
a hash the projector has written since is never overwritten. Running it again finds
nothing missing and writes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
import redis
from psycopg import sql

from infrastructure.redis_keys import RedisKeys
from projections.notifications.refill import HASHED_COLUMNS, HashRefill

NEWEST = 1000  # per tenant
ACTIVE_FOR = timedelta(days=1)


def warm_status_hashes(
    *, database_url: str, redis_url: str, namespace: str, now: datetime
) -> dict[str, int]:
    keys = RedisKeys(namespace)
    client = redis.Redis.from_url(redis_url)
    checked = refilled = 0
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            tenants = _active_tenants(conn, now)
            refill = HashRefill(client, keys)
            for tenant in tenants:
                rows = _newest(conn, tenant)
                checked += len(rows)
                present = _present(client, keys, rows)
                refilled += refill.rows(
                    [r for r, there in zip(rows, present, strict=True) if not there]
                )
    finally:
        client.close()
    return {"tenants": len(tenants), "checked": checked, "refilled": refilled}


def _active_tenants(conn: psycopg.Connection[Any], now: datetime) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT tenant_id FROM notification_stats WHERE day >= %s",
        ((now - ACTIVE_FOR).date(),),
    ).fetchall()
    return sorted(str(row[0]) for row in rows)


def _newest(conn: psycopg.Connection[Any], tenant: str) -> list[tuple[Any, ...]]:
    query = sql.SQL(
        "SELECT {} FROM notification_view WHERE tenant_id = %s"
        " ORDER BY created_position DESC LIMIT %s"
    ).format(HASHED_COLUMNS)
    return list(conn.execute(query, (tenant, NEWEST)).fetchall())


def _present(client: redis.Redis, keys: RedisKeys, rows: list[tuple[Any, ...]]) -> list[bool]:
    with client.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.exists(keys.status(row[0]))
        return [bool(found) for found in pipe.execute()]
