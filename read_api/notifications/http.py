"""Notification queries, served from the read models the notifications projection keeps.

- `GET /notifications/{id}`: Redis first (the projector's status hash, or the API's own
  short-lived copy of an earlier SQL read), then `notification_view`; hits, misses counted.
- `GET /notifications`: filtered, keyset-paged by creation position. The first page pins a
  snapshot (the projection's position then); later pages list only notifications created up
  to it, so inserts between pages neither shift nor repeat anything, and nothing up to the
  snapshot is missing, because the projection's position guarantees it is all there.
- `GET /me/notifications`: the same listing, of what was sent to the caller's own email.
- `GET /recipients/{recipient}/inbox`: a recipient's newest notifications, from Redis.

While Redis is out of reach (`REDIS_DOWN`) each answers from PostgreSQL and caches nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery, QueryParameter

from domain.identity.roles import Role
from domain.notifications.state import Status
from domain.notifications.values import Channel, Priority
from infrastructure.auth.guard import ANY_ROLE, allow
from infrastructure.auth.principal import Principal
from infrastructure.metrics import LIST_CACHE, READ_CACHE
from infrastructure.redis_keys import RECENT_KEPT
from infrastructure.web.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_token, paginate
from read_api.archived import raise_if_archived
from read_api.viewing import REDIS_DOWN, Reader, ReadModels, Viewer

READERS = allow(Role.ADMIN, Role.OPERATOR, Role.AUDITOR, Role.SENDER)


class NotificationView(msgspec.Struct, frozen=True, omit_defaults=False):
    id: UUID
    channel: str
    priority: str
    status: str
    requested_at: datetime
    updated_at: datetime
    version: int
    position: int  # of the newest event reflected here
    recipient: str = ""  # empty once erased
    attempts: int = 0
    last_error: str | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    send_at: datetime | None = None
    scheduled_at: datetime | None = None
    dispatched_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    opened_at: datetime | None = None
    failed_at: datetime | None = None
    cancelled_at: datetime | None = None
    dead_lettered_at: datetime | None = None


class NotificationPage(msgspec.Struct, frozen=True):
    items: list[NotificationView]
    next_cursor: str | None
    snapshot: int  # the log position this listing reflects, pinned by its first page


_FIELDS = tuple(f for f in NotificationView.__struct_fields__ if f != "id")
_COLUMNS = ", ".join(("notification_id", *_FIELDS))
CACHE_TTL_S = 30  # how long a copy read from SQL may answer while the status hash is missing


class _Cached(msgspec.Struct, frozen=True, array_like=True):
    tenant: str
    view: NotificationView


_cached = msgspec.json.Decoder(_Cached)


def _from_hash(notification_id: UUID, stored: dict[bytes, bytes]) -> NotificationView:
    fields: dict[str, Any] = {"id": notification_id}
    for name, value in stored.items():
        if value:
            fields[name.decode()] = value.decode()
    return msgspec.convert(fields, NotificationView, strict=False)


@get(
    "/notifications/{notification_id:uuid}",
    policy=READERS,
    tags=["notifications"],
    operation_id="getNotification",
    summary="A notification's current state, as the read models have it.",
)
async def get_notification(
    notification_id: FromPath[UUID], reader: NamedDependency[Reader]
) -> NotificationView:
    tenant, models = reader.tenant, reader.models
    keys = models.keys
    cache_key = keys.cached_status(notification_id)
    try:
        stored, cached = await models.statuses.get(keys.status(notification_id), cache_key)
    except REDIS_DOWN:
        stored, cached = {}, None
    copy = _cached.decode(cached) if cached else None
    if copy is not None and copy.view.position < reader.wanted:
        copy = None  # a copy from before the write this read waited for: ask SQL again
    if stored or copy:
        READ_CACHE.labels("hit").inc()
        if stored:
            if stored.get(b"tenant_id", b"").decode() == tenant:
                return _from_hash(notification_id, stored)
        elif copy is not None and copy.tenant == tenant:
            return copy.view
        raise NotFoundException(f"notification {notification_id} does not exist")
    READ_CACHE.labels("miss").inc()
    async with models.db.connection() as conn:
        cursor = await conn.execute(
            f"SELECT {_COLUMNS} FROM notification_view"  # noqa: S608 - constant columns
            " WHERE notification_id = %s AND tenant_id = %s",
            (notification_id, tenant),
        )
        row = await cursor.fetchone()
        if row is None:
            await raise_if_archived(conn, notification_id, tenant)
    if row is None:
        raise NotFoundException(f"notification {notification_id} does not exist")
    view = NotificationView(*row)
    # Cache-aside in a key of its own: the status hash is the projector's alone, so this
    # copy can never make the projector skip an event.
    with contextlib.suppress(*REDIS_DOWN):
        await models.redis.set(
            cache_key, msgspec.json.encode(_Cached(tenant, view)), ex=CACHE_TTL_S
        )
    return view


Sort = Annotated[
    Literal["created", "-created"],
    QueryParameter(description="`created` oldest first, `-created` newest first."),
]


@get(
    "/notifications",
    policy=READERS,
    tags=["notifications"],
    operation_id="listNotifications",
    summary="The tenant's notifications, filtered and paged by creation.",
)
async def list_notifications(
    reader: NamedDependency[Reader],
    *,
    status: FromQuery[Status | None] = None,
    channel: FromQuery[Channel | None] = None,
    priority: FromQuery[Priority | None] = None,
    recipient: Annotated[str | None, QueryParameter(min_length=1, max_length=320)] = None,
    created_after: FromQuery[datetime | None] = None,
    created_before: FromQuery[datetime | None] = None,
    sort: Sort = "-created",
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> NotificationPage:
    if recipient is not None:
        recipient = await reader.models.recipient_key(reader.tenant, recipient)
    query = ListQuery(
        status, channel, priority, recipient, created_after, created_before, sort, limit, cursor
    )
    return await list_page(reader.models, reader.tenant, query, position=reader.position)


@get(
    "/me/notifications",
    policy=ANY_ROLE,
    tags=["notifications"],
    operation_id="listMyNotifications",
    summary="Notifications addressed to you: those sent to the email you log in with.",
    description="For users of any role, within their tenant; API keys have no address. "
    "Paged as GET /notifications, newest first unless `sort=created`.",
)
async def my_notifications(
    reader: NamedDependency[Reader],
    *,
    status: FromQuery[Status | None] = None,
    sort: Sort = "-created",
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> NotificationPage:
    caller = reader.caller
    if caller.kind != "user":
        raise PermissionDeniedException("API keys have no address of their own")
    email = await _login_email(reader.models, caller)
    recipient = await reader.models.recipient_key(reader.tenant, email)
    query = ListQuery(status, None, None, recipient, None, None, sort, limit, cursor)
    return await list_page(reader.models, reader.tenant, query, position=reader.position)


async def _login_email(models: ReadModels, caller: Principal) -> str:
    async with models.db.connection() as conn:
        cursor = await conn.execute(
            "SELECT email FROM users WHERE user_id = %s AND tenant_id = %s AND status = 'active'",
            (UUID(caller.subject), caller.tenant_id),
        )
        row = await cursor.fetchone()
    if row is None or not row[0]:
        raise NotFoundException("the account behind these credentials no longer exists")
    return str(row[0])


class ListQuery(msgspec.Struct, frozen=True, array_like=True):
    status: str | None
    channel: Channel | None
    priority: Priority | None
    recipient: str | None  # the hex of the recipient's keyed hash, never the address
    created_after: datetime | None
    created_before: datetime | None
    sort: str
    limit: int
    cursor: str | None

    def key(self) -> str:
        return hashlib.blake2b(msgspec.json.encode(self), digest_size=16).hexdigest()


# KEYS[1]: the tenant's list version. ARGV: the page key without version and query, the query.
_CACHED_PAGE = """
local version = redis.call('GET', KEYS[1]) or '0'
return {version, redis.call('GET', ARGV[1] .. version .. ':' .. ARGV[2])}
"""
LIST_CACHE_TTL_S = 300
_page_decoder = msgspec.json.Decoder(NotificationPage)


async def list_page(
    models: ReadModels,
    tenant: str,
    query: ListQuery,
    *,
    position: Callable[[], Awaitable[int]],
) -> NotificationPage:
    """One page of the tenant's notifications: from the tenant's page cache when it holds
    this query under the current list version, else from SQL, then cached. `position`
    gives the projection's position, which a first page pins as its snapshot."""
    keys = models.keys
    # The tenant's list version is read before the list: a change committed after this read
    # moves the version, so a page cached now is never served for a newer version.
    try:
        version, cached = await models.redis.eval(
            _CACHED_PAGE, 1, keys.list_version(tenant), keys.list_pages(tenant), query.key()
        )
    except REDIS_DOWN:
        LIST_CACHE.labels("miss").inc()
        return await _query_page(models, tenant, query, position)
    if cached is not None:
        LIST_CACHE.labels("hit").inc()
        return _page_decoder.decode(cached)
    LIST_CACHE.labels("miss").inc()
    page = await _query_page(models, tenant, query, position)
    with contextlib.suppress(*REDIS_DOWN):
        await models.redis.set(
            keys.list_page(tenant, version.decode(), query.key()),
            msgspec.json.encode(page),
            ex=LIST_CACHE_TTL_S,
        )
    return page


async def _query_page(
    models: ReadModels, tenant: str, query: ListQuery, position: Callable[[], Awaitable[int]]
) -> NotificationPage:
    if query.cursor:
        snapshot, after = decode_token(query.cursor, tuple[int, int])
    else:
        snapshot, after = await position(), None
    where = ["tenant_id = %s", "created_position <= %s"]
    params: list[Any] = [tenant, snapshot]
    if after is not None:
        ascending = query.sort == "created"
        where.append("created_position > %s" if ascending else "created_position < %s")
        params.append(after)
    for column, value in (
        ("status", query.status),
        ("channel", query.channel.value if query.channel else None),
        ("priority", query.priority.value if query.priority else None),
        ("recipient_hash", query.recipient),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(bytes.fromhex(value) if column == "recipient_hash" else value)
    if query.created_after is not None:
        where.append("requested_at >= %s")
        params.append(query.created_after)
    if query.created_before is not None:
        where.append("requested_at < %s")
        params.append(query.created_before)
    order = "ASC" if query.sort == "created" else "DESC"
    async with models.db.connection() as conn:
        rows = await (
            await conn.execute(
                f"SELECT {_COLUMNS}, created_position FROM notification_view"  # noqa: S608
                f" WHERE {' AND '.join(where)} ORDER BY created_position {order} LIMIT %s",
                (*params, query.limit + 1),
            )
        ).fetchall()
    page, following = paginate(rows, query.limit, lambda row: (snapshot, row[-1]))
    return NotificationPage(
        items=[NotificationView(*row[:-1]) for row in page],
        next_cursor=following,
        snapshot=snapshot,
    )


class Inbox(msgspec.Struct, frozen=True):
    recipient: str
    unread: int  # sent or delivered, not yet opened
    items: list[NotificationView]  # newest first, from the newest 100 kept per recipient


@get(
    "/recipients/{recipient:str}/inbox",
    policy=READERS,
    tags=["notifications"],
    operation_id="getInbox",
    summary="A recipient's newest notifications and unread count, from Redis.",
    description="From PostgreSQL while Redis is out of reach.",
)
async def recipient_inbox(
    recipient: FromPath[str],
    viewer: NamedDependency[Viewer],
    limit: Annotated[int, QueryParameter(ge=1, le=RECENT_KEPT)] = 20,
) -> Inbox:
    tenant = viewer.tenant
    filed_as = await viewer.models.recipient_key(tenant, recipient)
    try:
        unread, items = await _inbox_from_redis(viewer.models, tenant, filed_as, limit)
    except REDIS_DOWN:
        unread, items = await _inbox_from_sql(viewer.models, tenant, filed_as, limit)
    return Inbox(recipient=recipient, unread=unread, items=items)


async def _inbox_from_redis(
    models: ReadModels, tenant: str, filed_as: str, limit: int
) -> tuple[int, list[NotificationView]]:
    keys = models.keys
    pipe = models.redis.pipeline(transaction=False)
    pipe.zrevrange(keys.recent(tenant, filed_as), 0, limit - 1)
    pipe.hget(keys.unread(tenant), filed_as)
    ids, unread = await pipe.execute()
    pipe = models.redis.pipeline(transaction=False)
    for notification_id in ids:
        pipe.hgetall(keys.status(notification_id.decode()))
    hashes = await pipe.execute() if ids else []
    items = [
        _from_hash(UUID(notification_id.decode()), stored)
        for notification_id, stored in zip(ids, hashes, strict=True)
        if stored  # a hash evicted since: the list shows what Redis still has
    ]
    return int(unread or 0), items


async def _inbox_from_sql(
    models: ReadModels, tenant: str, filed_as: str, limit: int
) -> tuple[int, list[NotificationView]]:
    """What the Redis inbox holds, from `notification_view`: the newest `limit` of the
    recipient's notifications, and how many are sent or delivered and not yet opened."""
    recipient = bytes.fromhex(filed_as)
    async with models.db.connection() as conn:
        rows = await (
            await conn.execute(
                f"SELECT {_COLUMNS} FROM notification_view"  # noqa: S608 - constant columns
                " WHERE tenant_id = %s AND recipient_hash = %s AND status <> 'erased'"
                " ORDER BY created_position DESC LIMIT %s",
                (tenant, recipient, limit),
            )
        ).fetchall()
        counted = await (
            await conn.execute(
                "SELECT count(*) FROM notification_view WHERE tenant_id = %s"
                " AND recipient_hash = %s AND status IN ('sent', 'delivered')",
                (tenant, recipient),
            )
        ).fetchone()
    return int(counted[0]) if counted else 0, [NotificationView(*row) for row in rows]


ROUTES = [
    get_notification,
    list_notifications,
    my_notifications,
    recipient_inbox,
]
