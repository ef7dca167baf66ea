"""The dispatch queue: which notifications need a dispatcher, from when, and how urgently.

Two writers keep it, both guarded by stream version so that neither undoes the other:
the dispatch-queue projection (projections/dispatch_queue/) applies notification events as
they arrive from Kafka, and a worker writes back what it learned from the stream of a
notification it held. Workers take due rows
with FOR UPDATE SKIP LOCKED and hold them under a lease, so two dispatchers never work on
one notification at once; a lease that runs out (its holder died) frees the row again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

# Locks are taken in id order, as the dispatch-queue projection takes them
# (projections/dispatch_queue/effects.py), so a deadlock should not happen; should one all
# the same (the sweep's inserts are not ordered), the transaction is tried again.
DEADLOCK_TRIES = 3
DEADLOCK_PAUSE_S = 0.05
_LOCK = """
SELECT 1 FROM dispatch_queue WHERE notification_id = ANY(%s)
ORDER BY notification_id FOR UPDATE
"""


@dataclass(frozen=True)
class Claimed:
    notification_id: UUID
    rank: int


_CLAIM = """
WITH due AS (
    SELECT notification_id FROM dispatch_queue
    WHERE priority_rank <= %(max_rank)s AND due_at <= now()
      AND (leased_until IS NULL OR leased_until < now())
    ORDER BY priority_rank, due_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE dispatch_queue q
SET leased_until = now() + make_interval(secs => %(lease_s)s), leased_by = %(worker)s
FROM due WHERE q.notification_id = due.notification_id
RETURNING q.notification_id, q.priority_rank
"""
_NEXT_DUE = """
SELECT extract(epoch FROM min(due_at) - now()) FROM dispatch_queue
WHERE priority_rank <= %s AND (leased_until IS NULL OR leased_until < now())
"""
# A worker hands a row back: a later due time, or gone when nothing is left to do. The
# consumer may have moved the row past what the worker saw; then only the lease goes.
_RELEASE = """
UPDATE dispatch_queue q
SET leased_until = NULL, leased_by = NULL,
    due_at = CASE WHEN q.version <= i.version THEN i.due_at ELSE q.due_at END,
    priority_rank = CASE WHEN q.version <= i.version THEN i.rank ELSE q.priority_rank END,
    version = greatest(q.version, i.version)
FROM unnest(%s::uuid[], %s::timestamptz[], %s::int2[], %s::int8[])
    AS i(notification_id, due_at, rank, version)
WHERE q.notification_id = i.notification_id AND q.leased_by = %s
"""
_DROP = """
DELETE FROM dispatch_queue q
USING unnest(%s::uuid[], %s::int8[]) AS i(notification_id, version)
WHERE q.notification_id = i.notification_id AND q.leased_by = %s AND q.version <= i.version
"""
_RENEW = """
UPDATE dispatch_queue SET leased_until = now() + make_interval(secs => %s)
WHERE notification_id IN (
    SELECT notification_id FROM dispatch_queue
    WHERE notification_id = ANY(%s) AND leased_by = %s
    FOR UPDATE SKIP LOCKED
)
"""
_UNLEASE = """
UPDATE dispatch_queue SET leased_until = NULL, leased_by = NULL
WHERE notification_id = ANY(%s) AND leased_by = %s
"""
# Notifications the read model says still need a dispatcher but the queue does not hold:
# their events were lost on the way (a broker that restarted empty). The age bound leaves
# the normal path, a few ms behind, alone.
_SWEEP = """
INSERT INTO dispatch_queue (notification_id, tenant_id, priority_rank, due_at, version)
SELECT v.notification_id, v.tenant_id,
       CASE v.priority WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'low' THEN 3 ELSE 2 END,
       now(), v.version
FROM notification_view v
WHERE v.status IN ('requested', 'scheduled', 'retry_scheduled', 'dispatching', 'failed', 'bounced')
  AND v.updated_at < now() - make_interval(secs => %s)
  AND NOT EXISTS (SELECT 1 FROM dispatch_queue q WHERE q.notification_id = v.notification_id)
ON CONFLICT (notification_id) DO NOTHING
"""


@dataclass(frozen=True)
class Release:
    notification_id: UUID
    version: int
    due_at: datetime | None  # None: nothing left, drop the row
    rank: int


class DispatchQueue:
    def __init__(self, worker: str, lease_s: int) -> None:
        self.worker = worker
        self._lease_s = lease_s

    async def claim(
        self, conn: psycopg.AsyncConnection[Any], max_rank: int, limit: int
    ) -> list[Claimed]:
        cursor = await conn.execute(
            _CLAIM,
            {"max_rank": max_rank, "limit": limit, "lease_s": self._lease_s, "worker": self.worker},
        )
        return [Claimed(row[0], row[1]) for row in await cursor.fetchall()]

    async def seconds_to_next_due(
        self, conn: psycopg.AsyncConnection[Any], max_rank: int
    ) -> float | None:
        row = await (await conn.execute(_NEXT_DUE, (max_rank,))).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def release(self, conn: psycopg.AsyncConnection[Any], releases: list[Release]) -> None:
        for attempt in range(1, DEADLOCK_TRIES + 1):
            try:
                await self._release(conn, releases)
            except psycopg.errors.TransactionRollback:
                if attempt == DEADLOCK_TRIES:
                    raise
                await asyncio.sleep(DEADLOCK_PAUSE_S * attempt)
            else:
                return

    async def _release(self, conn: psycopg.AsyncConnection[Any], releases: list[Release]) -> None:
        ordered = sorted(releases, key=lambda r: r.notification_id)  # see apply_effects
        later = [r for r in ordered if r.due_at is not None]
        done = [r for r in ordered if r.due_at is None]
        async with conn.transaction():
            await conn.execute(_LOCK, ([r.notification_id for r in ordered],))
            if later:
                await conn.execute(
                    _RELEASE,
                    (
                        [r.notification_id for r in later],
                        [r.due_at for r in later],
                        [r.rank for r in later],
                        [r.version for r in later],
                        self.worker,
                    ),
                )
            if done:
                ids = [r.notification_id for r in done]
                await conn.execute(_DROP, (ids, [r.version for r in done], self.worker))
                # Rows the consumer moved past the worker's version stay, without the lease.
                await conn.execute(_UNLEASE, (ids, self.worker))

    async def renew(self, conn: psycopg.AsyncConnection[Any], held: list[UUID]) -> None:
        """Extend the leases of `held`. A row another writer has locked just now is left for
        the next round (a renewal comes every third of a lease) rather than waited for."""
        await conn.execute(_RENEW, (self._lease_s, held, self.worker))

    async def hold(
        self, conn: psycopg.AsyncConnection[Any], notification_id: UUID, seconds: float
    ) -> None:
        """Keep a held row for `seconds` more; then any worker may take it again."""
        await conn.execute(
            "UPDATE dispatch_queue SET leased_until = now() + make_interval(secs => %s)"
            " WHERE notification_id = %s AND leased_by = %s",
            (seconds, notification_id, self.worker),
        )

    async def sweep(self, conn: psycopg.AsyncConnection[Any], older_than_s: float) -> int:
        cursor = await conn.execute(_SWEEP, (older_than_s,))
        return cursor.rowcount
