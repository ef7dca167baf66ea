"""POST /admin/jobs/{name}/run: run a scheduled job now, besides its schedule."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec
from litestar import post
from litestar.di import NamedDependency
from litestar.params import FromPath

from commands.jobs.handlers import RunJobNow
from domain.identity.roles import Role
from infrastructure.auth.guard import allow
from infrastructure.web.commands import Commands

ACCEPTED = 202


class JobRunAccepted(msgspec.Struct, frozen=True):
    run_id: UUID
    job: str
    requested_at: datetime


@post(
    "/admin/jobs/{name:str}/run",
    policy=allow(Role.ADMIN, Role.OPERATOR),
    status_code=ACCEPTED,
    tags=["admin"],
    operation_id="runJob",
    summary="Run a scheduled job now; a scheduler takes it within HERALD_SCHEDULER_POLL_S.",
    description="GET /admin/jobs shows its progress. 404 for a job that does not exist.",
)
async def run_job(name: FromPath[str], commands: NamedDependency[Commands]) -> JobRunAccepted:
    caller = commands.caller
    requested = await commands.handle(
        RunJobNow(tenant_id=caller.tenant_id, job=name, requested_by=caller.subject)
    )
    return JobRunAccepted(requested.run_id, requested.job, requested.requested_at)


ROUTES = [run_job]
