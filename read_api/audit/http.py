"""GET /events: the tenant's slice of the global event log, paged by position.

Positions are the event store's global sequence. A page lists the tenant's notification
events after `after`, up to the projection's position: the tenant of an event is known from
the notifications read model, which holds every notification up to that position.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from infrastructure.auth.guard import current_principal
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.resources import Resources
from read_api.notifications.http import AUDITORS, HistoryEvent, history_event
from read_api.visibility import (
    MinPosition,
    MinPositionHeader,
    current_position,
)

MAX_EVENTS = 1000


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
    request: Request[Any, Any, Any],
    resources: NamedDependency[Resources],
    *,
    after: Annotated[int, QueryParameter(ge=0, description="Events after this position.")] = 0,
    limit: Annotated[
        int, QueryParameter(ge=1, le=MAX_EVENTS, description="Events per page.")
    ] = 100,
    min_position: MinPosition = None,
    min_position_header: MinPositionHeader = None,
) -> EventPage:
    tenant = current_principal(request).tenant_id
    head = await current_position(resources, min_position, min_position_header)
    async with resources.db.connection() as conn:
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
    events = [history_event(resources, *row) for row in rows]
    # A short page read everything up to the head: the next one starts there.
    following = events[-1].position if len(events) == limit else max(after, head)
    return EventPage(events=events, next_after=following, head=head)


ROUTES = [list_events]
