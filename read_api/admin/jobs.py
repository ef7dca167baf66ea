"""GET /admin/jobs: each scheduled job's schedule, its next run, its last run and any run in
progress, from `job_runs`; and the job gauges GET /metrics exposes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import get
from litestar.di import NamedDependency
from psycopg_pool import AsyncConnectionPool

from domain.identity.roles import Role
from infrastructure.auth.guard import allow
from infrastructure.metrics import set_job_gauges
from infrastructure.scheduling.runs import LAST_COUNTS, LAST_SUCCESSES
from infrastructure.settings.pipeline import JOB_DEFAULTS, cron_trigger
from read_api.admin.http import Operations
from read_api.viewing import Viewer


class JobRun(msgspec.Struct, frozen=True):
    run_id: UUID
    tick: datetime  # the scheduled time it ran for, or when it was asked for by hand
    manual: bool
    requested_by: str | None
    runner: str | None  # host:pid of the scheduler that ran it
    attempts: int  # more than 1: a scheduler died and another took the run over
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None  # succeeded, failed; none while it runs
    counts: dict[str, Any] | None
    error: str | None


class JobView(msgspec.Struct, frozen=True):
    name: str
    schedule: str  # crontab fields, UTC
    description: str
    next_run: datetime | None
    last_run: JobRun | None
    last_success_at: datetime | None
    pending: list[JobRun]  # asked for or running, not finished


class Jobs(msgspec.Struct, frozen=True):
    jobs: list[JobView]


_RUN = (
    "run_id, tick, manual, requested_by, runner, attempts, started_at, finished_at,"
    " outcome, counts, error"
)
_LATEST = f"""
SELECT DISTINCT ON (job) job, {_RUN} FROM job_runs
WHERE finished_at IS NOT NULL ORDER BY job, finished_at DESC
"""  # noqa: S608 - constant columns
_PENDING = f"SELECT job, {_RUN} FROM job_runs WHERE finished_at IS NULL ORDER BY tick"  # noqa: S608


@get(
    "/admin/jobs",
    policy=allow(Role.ADMIN, Role.OPERATOR),
    tags=["admin"],
    operation_id="listJobs",
    summary="Each scheduled job: its schedule, next run, last run, and runs in progress.",
)
async def list_jobs(
    operations: NamedDependency[Operations], viewer: NamedDependency[Viewer]
) -> Jobs:
    async with viewer.models.db.connection() as conn:
        latest = {
            row[0]: JobRun(*row[1:]) for row in await (await conn.execute(_LATEST)).fetchall()
        }
        pending: dict[str, list[JobRun]] = {}
        for row in await (await conn.execute(_PENDING)).fetchall():
            pending.setdefault(row[0], []).append(JobRun(*row[1:]))
        successes: dict[str, datetime] = dict(await (await conn.execute(LAST_SUCCESSES)).fetchall())
    now = datetime.now(UTC)
    return Jobs(
        [
            JobView(
                name=name,
                schedule=cron,
                description=JOB_DEFAULTS[name].description if name in JOB_DEFAULTS else "",
                next_run=cron_trigger(cron).get_next_fire_time(None, now),
                last_run=latest.get(name),
                last_success_at=successes.get(name),
                pending=pending.get(name, []),
            )
            for name, cron in operations.schedules.items()
        ]
    )


async def refresh_job_gauges(db: AsyncConnectionPool) -> None:
    """Set the job gauges from `job_runs`, for the scrape about to be answered."""
    async with db.connection() as conn:
        successes = await (await conn.execute(LAST_SUCCESSES)).fetchall()
        counts = await (await conn.execute(LAST_COUNTS)).fetchall()
    set_job_gauges(successes, counts)


ROUTES = [list_jobs]
