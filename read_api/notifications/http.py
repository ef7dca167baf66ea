"""GET /notifications/{id}: a notification's current state, from the read model."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from domain.identity.roles import Role
from infrastructure.auth.guard import allow, current_principal
from infrastructure.resources import Resources

READERS = allow(Role.ADMIN, Role.OPERATOR, Role.AUDITOR, Role.SENDER)


class NotificationView(msgspec.Struct, frozen=True):
    id: UUID
    channel: str
    recipient: str
    priority: str
    status: str
    attempts: int
    last_error: str | None
    provider_message_id: str | None
    send_at: datetime | None
    requested_at: datetime
    updated_at: datetime
    position: int


_COLUMNS = (
    "notification_id, channel, recipient, priority, status, attempts, last_error,"
    " provider_message_id, send_at, requested_at, updated_at, position"
)


@get(
    "/notifications/{notification_id:uuid}",
    policy=READERS,
    tags=["notifications"],
    operation_id="getNotification",
    summary="A notification's current state, as the read model has it.",
)
async def get_notification(
    notification_id: FromPath[UUID],
    request: Request[Any, Any, Any],
    resources: NamedDependency[Resources],
) -> NotificationView:
    tenant = current_principal(request).tenant_id
    async with resources.db.connection() as conn:
        cursor = await conn.execute(
            f"SELECT {_COLUMNS} FROM notification_view"  # noqa: S608 - constant columns
            " WHERE notification_id = %s AND tenant_id = %s",
            (notification_id, tenant),
        )
        row = await cursor.fetchone()
    if row is None:
        raise NotFoundException(f"notification {notification_id} does not exist")
    return NotificationView(*row)


ROUTES = [get_notification]
