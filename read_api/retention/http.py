"""GET /data-pipeline/retention: the tenant's retention, its own or the defaults."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import get
from litestar.di import NamedDependency

from domain.identity.roles import Role
from infrastructure.auth.guard import allow
from read_api.admin.http import Operations
from read_api.viewing import Viewer


class Retention(msgspec.Struct, frozen=True, kw_only=True):
    notifications_days: int
    events_days: int
    default: bool  # no policy of the tenant's own: these are HERALD_RETENTION_* defaults
    updated_at: datetime | None = None
    updated_by: str | None = None


@get(
    "/data-pipeline/retention",
    policy=allow(Role.ADMIN),
    tags=["data pipeline"],
    operation_id="getRetention",
    summary="How long the tenant's notifications and their events are kept.",
)
async def get_retention(
    viewer: NamedDependency[Viewer], operations: NamedDependency[Operations]
) -> Retention:
    async with viewer.models.db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT notifications_days, events_days, updated_at, updated_by"
                " FROM retention_policies WHERE tenant_id = %s",
                (viewer.tenant,),
            )
        ).fetchone()
    if row is None:
        defaults = operations.retention_defaults
        return Retention(
            notifications_days=defaults.notifications_days,
            events_days=defaults.events_days,
            default=True,
        )
    return Retention(
        notifications_days=row[0],
        events_days=row[1],
        default=False,
        updated_at=row[2],
        updated_by=row[3],
    )


ROUTES = [get_retention]
