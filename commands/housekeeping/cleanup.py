"""The cleanup job: forget what has served its time, and nothing that still counts.

- Idempotency keys older than HERALD_IDEMPOTENCY_TTL_H: a retry after that is a new request.
- Dispatch-queue rows whose notification needs no dispatcher any more (the read model says
  it is final, and knows at least what the row knows) and that nobody holds.
- Refresh tokens of revoked logins: revoking a family deletes the family, and its tokens
  would otherwise linger, dead, until they expire.

Each step is idempotent and bounded by the time it is given, so running it twice for one
tick removes nothing more.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
import redis

from infrastructure.auth.revocation import REFRESH_FAMILY_PREFIX, REFRESH_TOKEN_PREFIX

FINAL = ("sent", "delivered", "opened", "dead_lettered", "cancelled", "erased")
SCAN_BATCH = 1000

_FORGET_KEYS = "DELETE FROM idempotency_keys WHERE created_at < %s"
_DROP_FINISHED = """
DELETE FROM dispatch_queue q USING notification_view v
WHERE q.notification_id = v.notification_id
  AND v.status = ANY(%s) AND q.version <= v.version
  AND (q.leased_until IS NULL OR q.leased_until < %s)
"""


def clean_up(
    *, database_url: str, redis_url: str, now: datetime, idempotency_ttl: timedelta
) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys = conn.execute(_FORGET_KEYS, (now - idempotency_ttl,)).rowcount
        queue = conn.execute(_DROP_FINISHED, (list(FINAL), now)).rowcount
    tokens = _forget_orphaned_refresh_tokens(redis_url)
    return {"idempotency_keys": keys, "dispatch_queue_rows": queue, "refresh_tokens": tokens}


def _forget_orphaned_refresh_tokens(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    removed = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{REFRESH_TOKEN_PREFIX}*", count=SCAN_BATCH):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                removed += _drop_orphans(client, batch)
                batch = []
        if batch:
            removed += _drop_orphans(client, batch)
    finally:
        client.close()
    return removed


def _drop_orphans(client: redis.Redis, tokens: list[bytes]) -> int:
    families = [f.decode() if isinstance(f, bytes) else f for f in client.mget(tokens)]
    with client.pipeline(transaction=False) as pipe:
        for family in families:
            pipe.exists(REFRESH_FAMILY_PREFIX + (family or ""))
        alive = pipe.execute()
    orphans = [t for t, f, a in zip(tokens, families, alive, strict=True) if f and not a]
    return int(client.delete(*orphans)) if orphans else 0
