"""The event log for auditors: one notification's history, and the tenant's slice of the log.

- `GET /notifications/{id}/history`: every event of one notification, from the event store.
- `GET /events`: the tenant's notification events after a position, paged by position.
  Positions are the event store's global sequence. A page lists events up to the
  projection's position: the tenant of an event is known from the notifications read
  model, which holds every notification up to that position.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from domain.identity.roles import Role
from infrastructure.auth.guard import allow
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.reader import decoded
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.web.contract import MAX_POSITION
from read_api.archived import raise_if_archived
from read_api.viewing import Reader, Viewer

AUDITORS = allow(Role.ADMIN, Role.OPERATOR, Role.AUDITOR)

MAX_EVENTS = 1000


class HistoryEvent(msgspec.Struct, frozen=True):
    position: int
    version: int
    type: str
    schema_version: int
    at: datetime
    data: dict[str, Any]


class History(msgspec.Struct, frozen=True):
    id: UUID
    events: list[HistoryEvent]


@get(
    "/notifications/{notification_id:uuid}/history",
    policy=AUDITORS,
    tags=["audit"],
    operation_id="getNotificationHistory",
    summary="Every event of one notification, in order, from the event store.",
    description="410 Gone, naming the archive, for a notification archived past retention.",
)
async def notification_history(
    notification_id: FromPath[UUID],
    viewer: NamedDependency[Viewer],
) -> History:
    tenant = viewer.tenant
    async with viewer.models.db.connection() as conn:
        await raise_if_archived(conn, notification_id, tenant)
        rows = await (
            await conn.execute(
                f"SELECT notification_id, originator_version, topic, state FROM {EVENTS_TABLE}"  # noqa: S608
                " WHERE originator_id = %s ORDER BY originator_version",
                (notification_id,),
            )
        ).fetchall()
    events = await history_events(viewer.models.codec, rows)
    if not events or events[0].data.get("tenant_id") != tenant:
        raise NotFoundException(f"notification {notification_id} does not exist")
    return History(id=notification_id, events=events)


async def history_events(codec: EventCodec, rows: list[tuple[Any, ...]]) -> list[HistoryEvent]:
    """(position, version, topic, state) rows as history, personal fields opened: `[erased]`
    where the subject's key was destroyed."""
    decoded_events = await decoded(codec, [(topic, bytes(state)) for _, _, topic, state in rows])
    shown = []
    for (position, version, topic, _), event in zip(rows, decoded_events, strict=True):
        name, _, schema = topic.partition("@")
        data: dict[str, Any] = msgspec.to_builtins(event)
        shown.append(
            HistoryEvent(
                position=position,
                version=version,
                type=name,
                schema_version=int(schema or 1),
                at=event.at,
                data=data,
            )
        )
    return shown


class EventPage(msgspec.Struct, frozen=True):
    events: list[HistoryEvent]
    next_after: int  # pass as `after` for the next page; the head once a page comes up short
    head: int  # the newest position the log can be read up to now


@get(
    "/events",
    policy=AUDITORS,
    tags=["audit"],
    operation_id="listEvents",
    summary="The tenant's notification events in log order, after a position.",
)
async def list_events(
    reader: NamedDependency[Reader],
    *,
    after: Annotated[
        int, QueryParameter(ge=0, le=MAX_POSITION, description="Events after this position.")
    ] = 0,
    limit: Annotated[
        int, QueryParameter(ge=1, le=MAX_EVENTS, description="Events per page.")
    ] = 100,
) -> EventPage:
    tenant = reader.tenant
    head = await reader.position()
    async with reader.models.db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT e.notification_id, e.originator_version, e.topic, e.state"  # noqa: S608
                f" FROM {EVENTS_TABLE} e JOIN notification_view v"
                " ON v.notification_id = e.originator_id AND v.tenant_id = %s"
                " WHERE e.notification_id > %s AND e.notification_id <= %s"
                " ORDER BY e.notification_id LIMIT %s",
                (tenant, after, head, limit),
            )
        ).fetchall()
    events = await history_events(reader.models.codec, rows)
    # A short page read everything up to the head: the next one starts there.
    following = events[-1].position if len(events) == limit else max(after, head)
    return EventPage(events=events, next_after=following, head=head)


ROUTES = [notification_history, list_events]
