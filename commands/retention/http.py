"""PUT /data-pipeline/retention: set the tenant's retention (admin); audited as every change is."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from commands.jobs.handlers import RunJobNow
from commands.retention.policy import ChangeRetention
from domain.identity.roles import Role
from domain.retention import MAX_DAYS, MIN_DAYS, RetentionPolicy
from infrastructure.auth.guard import allow
from infrastructure.web.commands import Commands

Days = Annotated[int, msgspec.Meta(ge=MIN_DAYS, le=MAX_DAYS)]


class RetentionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    notifications_days: Days
    events_days: Days


class RetentionSet(msgspec.Struct, frozen=True, kw_only=True):
    notifications_days: int
    events_days: int


@put(
    "/data-pipeline/retention",
    policy=allow(Role.ADMIN),
    tags=["data pipeline"],
    status_code=HTTP_200_OK,
    operation_id="setRetention",
    summary="Set how long the tenant's notifications and their events are kept.",
    description="Final notifications older than notifications_days are archived and leave "
    "the read models; their events leave the event store after events_days. Each at least "
    "7 days; events_days at least notifications_days.",
)
async def set_retention(
    data: JSONBody[RetentionRequest], commands: NamedDependency[Commands]
) -> RetentionSet:
    caller = commands.caller
    policy = RetentionPolicy(
        notifications_days=data.notifications_days, events_days=data.events_days
    )
    chosen = await commands.handle(
        ChangeRetention(tenant_id=caller.tenant_id, policy=policy, changed_by=caller.subject)
    )
    return RetentionSet(
        notifications_days=chosen.notifications_days, events_days=chosen.events_days
    )


class ArchiveRunAccepted(msgspec.Struct, frozen=True, kw_only=True):
    run_id: UUID
    job: str
    requested_at: datetime


@post(
    "/data-pipeline/archive",
    policy=allow(Role.ADMIN),
    tags=["data pipeline"],
    status_code=HTTP_202_ACCEPTED,
    operation_id="runArchival",
    summary="Archive the tenant's notifications past retention now, besides the nightly run.",
    description="A scheduler takes the run within HERALD_SCHEDULER_POLL_S; "
    "GET /data-pipeline/archive/stats shows it running, then as the last run.",
)
async def run_archival(commands: NamedDependency[Commands]) -> ArchiveRunAccepted:
    caller = commands.caller
    requested = await commands.handle(
        RunJobNow(
            tenant_id=caller.tenant_id,
            job="archive",
            requested_by=caller.subject,
            only_this_tenant=True,
        )
    )
    return ArchiveRunAccepted(
        run_id=requested.run_id, job=requested.job, requested_at=requested.requested_at
    )


ROUTES = [set_retention, run_archival]
