"""The dashboard API for admins and operators: counters, queues, dead letters and search.

Everything here reads read models (Redis counters, SQL views), the broker's offsets and the
followers' positions; nothing loads an aggregate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar import get
from litestar.di import NamedDependency

from domain.identity.roles import Role
from domain.retention import RetentionPolicy
from infrastructure.auth.guard import allow
from infrastructure.eventstore.catalog import NOTIFICATION_EVENT_NAMES
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION, RELAY
from infrastructure.kafka.offsets import OffsetReader
from infrastructure.kafka.topics import PROJECTOR_GROUP, consumer_group, notifications_topic
from infrastructure.metrics import cache_counts
from infrastructure.web.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_token, paginate
from read_api.notifications.http import list_notifications
from read_api.viewing import REDIS_DOWN, Reader, ReadModels, Viewer, log_head

ADMINS = allow(Role.ADMIN, Role.OPERATOR)


@dataclass(frozen=True)
class Operations:
    """The `operations` dependency: where to look for the broker's offsets and the providers."""

    namespace: str
    offsets: OffsetReader | None  # the notifications topic's, for the projectors' group
    # Per provider: mode, circuit state and call counts, all dispatchers together.
    provider_states: Callable[[], Awaitable[dict[str, dict[str, Any]]]]
    schedules: dict[str, str]  # each scheduled job's crontab fields, UTC
    retention_defaults: RetentionPolicy  # for tenants without a policy of their own


class Dashboard(msgspec.Struct, frozen=True):
    statuses: dict[str, int]  # notifications in each status now
    events: dict[str, int]  # events seen, per type
    unread_recipients: int  # recipients with at least one sent, unopened notification
    # Where the counters came from: the projector's Redis counters, or PostgreSQL while
    # Redis is out of reach (counted there on every request, so slower).
    source: Literal["redis", "postgresql"] = "redis"


class DeadLetter(msgspec.Struct, frozen=True):
    id: UUID
    channel: str
    recipient: str
    priority: str
    attempts: int
    last_error: str | None
    requested_at: datetime
    dead_lettered_at: datetime | None


class DeadLetterPage(msgspec.Struct, frozen=True):
    items: list[DeadLetter]
    next_cursor: str | None


class PartitionStats(msgspec.Struct, frozen=True):
    partition: int
    low: int
    high: int  # the next offset to be written
    committed: int | None  # where the projector group has got to
    lag: int | None


class Follower(msgspec.Struct, frozen=True):
    name: str
    position: int
    lag: int  # events in the log after its position


class QueueStats(msgspec.Struct, frozen=True):
    topic: str
    consumer_group: str
    partitions: list[PartitionStats]
    log_head: int
    followers: list[Follower]


class Metrics(msgspec.Struct, frozen=True):
    read_cache: dict[str, float]  # this API's lookups by id: hit (Redis), miss (SQL)
    read_cache_hit_rate: float | None
    list_cache: dict[str, float]  # this API's list pages: hit (Redis), miss (SQL)
    log_head: int
    projection_lag: int
    notifications_by_status: dict[str, int]  # this tenant's, from the statistics model
    # Per provider: mode (live or sandbox), circuit state and call counts, all dispatchers.
    providers: dict[str, dict[str, Any]]


@get(
    "/admin/dashboard",
    policy=ADMINS,
    tags=["admin"],
    operation_id="getDashboard",
    summary="Live counters for the tenant, from Redis.",
    description="Counted in PostgreSQL while Redis is out of reach (`source` says which).",
)
async def dashboard(reader: NamedDependency[Reader]) -> Dashboard:
    tenant, keys = reader.tenant, reader.models.keys
    pipe = reader.models.redis.pipeline(transaction=False)
    pipe.hgetall(keys.dashboard(tenant))
    pipe.hlen(keys.unread(tenant))
    try:
        counters, unread = await pipe.execute()
    except REDIS_DOWN:
        return await _dashboard_from_sql(reader.models, tenant)
    statuses: dict[str, int] = {}
    events: dict[str, int] = {}
    for raw_name, raw_value in counters.items():
        kind, _, name = raw_name.decode().partition(":")
        value = int(raw_value)
        if kind == "status" and value:
            statuses[name] = value
        elif kind == "events":
            events[name] = value
    return Dashboard(statuses=statuses, events=events, unread_recipients=int(unread))


# The log's events of the tenant's notifications, by kind, as the projector counts them: of
# those in the view and those archived (a restored one is in the view again).
_EVENTS = (
    "SELECT split_part(e.topic, '@', 1), count(*)"  # noqa: S608 - constant table name
    f" FROM {EVENTS_TABLE} e JOIN ("
    " SELECT notification_id FROM notification_view WHERE tenant_id = %(tenant)s"
    " UNION ALL SELECT notification_id FROM archived_notifications"
    " WHERE tenant_id = %(tenant)s AND restored_position IS NULL"
    ") owned ON owned.notification_id = e.originator_id"
    " WHERE split_part(e.topic, '@', 1) = ANY(%(names)s) GROUP BY 1"
)


async def _dashboard_from_sql(models: ReadModels, tenant: str) -> Dashboard:
    async with models.db.connection() as conn:
        statuses = await (
            await conn.execute(
                "SELECT status, count(*) FROM notification_view WHERE tenant_id = %s GROUP BY 1",
                (tenant,),
            )
        ).fetchall()
        events = await (
            await conn.execute(_EVENTS, {"tenant": tenant, "names": list(NOTIFICATION_EVENT_NAMES)})
        ).fetchall()
        unread = await (
            await conn.execute(
                "SELECT count(DISTINCT recipient_hash) FROM notification_view"
                " WHERE tenant_id = %s AND status IN ('sent', 'delivered')",
                (tenant,),
            )
        ).fetchone()
    return Dashboard(
        statuses={status: int(count) for status, count in statuses},
        events={name: int(count) for name, count in events},
        unread_recipients=int(unread[0]) if unread else 0,
        source="postgresql",
    )


@get(
    "/admin/dlq",
    policy=ADMINS,
    tags=["admin"],
    operation_id="listDeadLetters",
    summary="Dead-lettered notifications, newest first.",
)
async def dead_letters(
    reader: NamedDependency[Reader], *, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> DeadLetterPage:
    tenant = reader.tenant
    before = decode_token(cursor, int) if cursor else None
    async with reader.models.db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT notification_id, channel, recipient, priority, attempts, last_error,"
                " requested_at, dead_lettered_at, created_position FROM notification_view"
                " WHERE tenant_id = %s AND status = 'dead_lettered'"
                " AND (%s::bigint IS NULL OR created_position < %s)"
                " ORDER BY created_position DESC LIMIT %s",
                (tenant, before, before, limit + 1),
            )
        ).fetchall()
    page, following = paginate(rows, limit, lambda row: row[-1])
    return DeadLetterPage(items=[DeadLetter(*row[:-1]) for row in page], next_cursor=following)


async def _positions(models: ReadModels) -> tuple[int, dict[str, int]]:
    head = await log_head(models)
    async with models.db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT application_name, coalesce(notification_id, 0) FROM tracking"
                " WHERE application_name = ANY(%s)",
                ([RELAY, NOTIFICATIONS_PROJECTION],),
            )
        ).fetchall()
    return head, {name: int(p) for name, p in rows}


@get(
    "/admin/queue/stats",
    policy=ADMINS,
    tags=["admin"],
    operation_id="getQueueStats",
    summary="Kafka partitions, end offsets and consumer lag; relay and projection lag.",
)
async def queue_stats(
    operations: NamedDependency[Operations], viewer: NamedDependency[Viewer]
) -> QueueStats:
    topic = notifications_topic(operations.namespace)
    group = consumer_group(operations.namespace, PROJECTOR_GROUP)
    reader = operations.offsets
    found = await asyncio.to_thread(reader.read) if reader is not None else []
    partitions = [
        PartitionStats(
            p.partition,
            p.low,
            p.high,
            p.committed,
            None if p.committed is None else max(0, p.high - p.committed),
        )
        for p in found
    ]
    head, positions = await _positions(viewer.models)
    followers = [Follower(name, p, max(0, head - p)) for name, p in sorted(positions.items())]
    return QueueStats(
        topic=topic, consumer_group=group, partitions=partitions, log_head=head, followers=followers
    )


@get(
    "/admin/metrics",
    policy=ADMINS,
    tags=["admin"],
    operation_id="getMetrics",
    summary="System and business counters (Prometheus text is at /metrics).",
)
async def metrics(
    reader: NamedDependency[Reader], operations: NamedDependency[Operations]
) -> Metrics:
    reached = await reader.position()
    counts = cache_counts()
    lookups = counts["hit"] + counts["miss"]
    head, _ = await _positions(reader.models)
    async with reader.models.db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT status, sum(count) FROM notification_stats WHERE tenant_id = %s"
                " GROUP BY status HAVING sum(count) <> 0",
                (reader.tenant,),
            )
        ).fetchall()
    return Metrics(
        providers=await operations.provider_states(),
        read_cache=counts,
        read_cache_hit_rate=counts["hit"] / lookups if lookups else None,
        list_cache=cache_counts("herald_list_cache"),
        log_head=head,
        projection_lag=max(0, head - reached),
        notifications_by_status={status: int(total) for status, total in rows},
    )


search_notifications = get(
    "/admin/notifications",
    policy=ADMINS,
    tags=["admin"],
    operation_id="searchNotifications",
    summary="Search the tenant's notifications: the filters and paging of GET /notifications.",
)(list_notifications.fn)

ROUTES = [dashboard, dead_letters, queue_stats, metrics, search_notifications]
