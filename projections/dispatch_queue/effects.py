"""What each notification event means for the dispatch queue, applied set-wise in one transaction.

Rows are written guarded by stream version, so a redelivered or overtaken event never moves a
row backward, and the dispatchers' own writes (claims, leases, releases) are never undone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from domain.events import DomainEvent
from domain.notifications.dispatch_policy import PRIORITY_RANK
from domain.notifications.events import (
    ChannelFallenBack,
    DeliveryFailed,
    NotificationArchived,
    NotificationBounced,
    NotificationCancelled,
    NotificationDeadLettered,
    NotificationDelivered,
    NotificationErased,
    NotificationOpened,
    NotificationRequested,
    NotificationScheduled,
    NotificationSent,
    RetryRequested,
    RetryScheduled,
)

# Locks are taken in id order, as the dispatchers take them, so a deadlock should not happen;
# should one all the same (a dispatcher's sweep inserts unordered), the transaction is tried again.
DEADLOCK_TRIES = 3
DEADLOCK_PAUSE_S = 0.05
UNKNOWN_RANK = 2  # the rank of `normal`, for a row first seen from an event without priority


@dataclass(frozen=True)
class Due:
    """The notification needs a dispatcher from `at`."""

    tenant_id: str
    at: datetime
    rank: int | None  # known only from NotificationRequested


@dataclass(frozen=True)
class Finished:
    """No dispatcher has anything left to do for it (unless a later event says otherwise)."""


Effect = Due | Finished


def effect_of(event: DomainEvent) -> Effect | None:
    """What an event means for the queue; None: nothing (DispatchStarted, for one)."""
    match event:
        case NotificationRequested():
            return Due(event.tenant_id, event.send_at or event.at, PRIORITY_RANK[event.priority])
        case NotificationScheduled():
            return Due(event.tenant_id, event.send_at, None)
        case RetryScheduled():
            return Due(event.tenant_id, event.retry_at, None)
        case ChannelFallenBack() | RetryRequested() | DeliveryFailed() | NotificationBounced():
            return Due(event.tenant_id, event.at, None)
        case (
            NotificationSent()
            | NotificationDelivered()
            | NotificationOpened()
            | NotificationDeadLettered()
            | NotificationCancelled()
            | NotificationErased()
            | NotificationArchived()
        ):
            return Finished()
    return None


# Insert, or move a row forward; never backward. ON CONFLICT also holds when a worker drops
# the row at the same moment: the insert then goes ahead instead of updating nothing.
# A row's rank comes from NotificationRequested, its first event, so an update keeps it.
_UPSERT = """
INSERT INTO dispatch_queue AS q (notification_id, tenant_id, priority_rank, due_at, version)
SELECT i.notification_id, i.tenant_id, coalesce(i.rank, %s), i.due_at, i.version
FROM unnest(%s::uuid[], %s::text[], %s::int2[], %s::timestamptz[], %s::int8[])
    AS i(notification_id, tenant_id, rank, due_at, version)
ORDER BY i.notification_id
ON CONFLICT (notification_id) DO UPDATE
SET due_at = excluded.due_at, version = excluded.version
WHERE q.version < excluded.version
"""
# Every statement that changes many rows takes their locks first, in id order, so that the
# consumer and the workers of several dispatchers never wait on each other in a cycle.
_LOCK = """
SELECT 1 FROM dispatch_queue WHERE notification_id = ANY(%s)
ORDER BY notification_id FOR UPDATE
"""
_FINISH = """
DELETE FROM dispatch_queue q
USING unnest(%s::uuid[], %s::int8[]) AS i(notification_id, version)
WHERE q.notification_id = i.notification_id AND q.version < i.version
"""


def apply_effects(conn: psycopg.Connection[Any], effects: dict[UUID, tuple[int, Effect]]) -> int:
    """Apply the last effect per notification (with its stream version) in one transaction.

    Returns how many of them are due now or earlier, so the caller can wake the workers.
    """
    for attempt in range(1, DEADLOCK_TRIES + 1):
        try:
            return _apply_effects(conn, effects)
        except psycopg.errors.TransactionRollback:
            if attempt == DEADLOCK_TRIES:
                raise
            time.sleep(DEADLOCK_PAUSE_S * attempt)
    raise AssertionError("unreachable")


def _apply_effects(conn: psycopg.Connection[Any], effects: dict[UUID, tuple[int, Effect]]) -> int:
    # In id order, as workers hand rows back, so that the two lock rows in the same order.
    ordered = sorted(effects.items())
    due = [(i, v, e) for i, (v, e) in ordered if isinstance(e, Due)]
    finished = [(i, v) for i, (v, e) in ordered if isinstance(e, Finished)]
    with conn.transaction():
        conn.execute(_LOCK, ([i for i, _ in ordered],))
        if due:
            conn.execute(
                _UPSERT,
                (
                    UNKNOWN_RANK,
                    [i for i, _, _ in due],
                    [e.tenant_id for _, _, e in due],
                    [e.rank for _, _, e in due],
                    [e.at for _, _, e in due],
                    [v for _, v, _ in due],
                ),
            )
        if finished:
            conn.execute(_FINISH, ([i for i, _ in finished], [v for _, v in finished]))
    now = datetime.now(tz=due[0][2].at.tzinfo) if due else None
    return sum(1 for _, _, e in due if now is not None and e.at <= now)
