"""Running a scheduled job by hand: the request is an event (so it is audited) committed with
the `job_runs` row a scheduler will take; the job itself runs in a scheduler process."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from uuid_utils.compat import uuid7

from domain.errors import NotFoundError
from domain.operations import JobRunRequested
from infrastructure.eventstore.store import EventStore
from infrastructure.messagebus import Command, Handlers
from infrastructure.scheduling.runs import request_write


@dataclass(frozen=True)
class RequestedRun:
    run_id: UUID
    job: str
    requested_at: datetime


class RunJobNow(Command[RequestedRun], frozen=True, kw_only=True):
    tenant_id: str
    job: str
    requested_by: str
    only_this_tenant: bool = False  # a run for the requester's tenant alone


def run_job_now(cmd: RunJobNow, *, store: EventStore, schedules: Mapping[str, str]) -> RequestedRun:
    if cmd.job not in schedules:
        raise NotFoundError(f"job {cmd.job!r} does not exist; jobs: {', '.join(schedules)}")
    run_id, now = uuid7(), datetime.now(UTC)
    event = JobRunRequested(
        at=now, tenant_id=cmd.tenant_id, job=cmd.job, run_id=run_id, requested_by=cmd.requested_by
    )
    scope = cmd.tenant_id if cmd.only_this_tenant else None
    request = request_write(run_id, cmd.job, now, cmd.requested_by, scope)
    store.append(run_id, 0, [event], writes=[request])
    return RequestedRun(run_id, cmd.job, now)


HANDLERS: Handlers = {RunJobNow: run_job_now}
