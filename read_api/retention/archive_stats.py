"""GET /data-pipeline/archive/stats: what archival has done for the tenant and what it will
do next: what is archived and where, the files, the last run, runs waiting, the next
nightly run, and how many notifications are past retention right now."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from litestar import get
from litestar.di import NamedDependency

from domain.identity.roles import Role
from infrastructure.auth.guard import allow
from infrastructure.settings.pipeline import cron_trigger
from read_api.admin.http import Operations
from read_api.viewing import Viewer

FINAL = ("sent", "delivered", "opened", "dead_lettered", "cancelled")


class ArchivedCounts(msgspec.Struct, frozen=True, kw_only=True):
    notifications: int  # archived now, out of the read models
    events_removed: int  # of those, how many have lost their events to retention
    restored: int  # archived once, and brought back since


class ArchiveFilesStats(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    rows: int
    bytes: int
    oldest_day: date | None
    newest_day: date | None


class ArchiveRun(msgspec.Struct, frozen=True, kw_only=True):
    run_id: UUID
    as_of: datetime  # the time retention was measured from
    finished_at: datetime
    archived: int
    files: int
    bytes: int
    events_removed: int
    requested_by: str | None  # None: the nightly run


class RetentionInForce(msgspec.Struct, frozen=True, kw_only=True):
    notifications_days: int
    events_days: int
    default: bool


class ArchiveStats(msgspec.Struct, frozen=True, kw_only=True):
    retention: RetentionInForce
    archived: ArchivedCounts
    files: ArchiveFilesStats
    past_retention_now: int  # final notifications the next run would archive
    last_run: ArchiveRun | None
    runs_waiting: int  # asked for by hand (or scheduled) and not finished
    next_run: datetime | None  # the next nightly run


_ARCHIVED = """
SELECT count(*) FILTER (WHERE restored_position IS NULL),
       count(*) FILTER (WHERE restored_position IS NULL AND events_removed),
       count(*) FILTER (WHERE restored_position IS NOT NULL)
FROM archived_notifications WHERE tenant_id = %s
"""
_FILES = """
SELECT count(*), coalesce(sum(rows), 0)::bigint, coalesce(sum(bytes), 0)::bigint, min(day), max(day)
FROM archives WHERE tenant_id = %s
"""
_LAST_RUN = """
SELECT run_id, at, finished_at, archived, files, bytes, events_removed, requested_by
FROM archive_runs WHERE tenant_id = %s ORDER BY finished_at DESC LIMIT 1
"""
_WAITING = """
SELECT count(*) FROM job_runs WHERE job = 'archive' AND finished_at IS NULL
  AND (tenant_id IS NULL OR tenant_id = %s)
"""
_POLICY = "SELECT notifications_days, events_days FROM retention_policies WHERE tenant_id = %s"
_PAST = (
    "SELECT count(*) FROM notification_view WHERE tenant_id = %s AND requested_at < %s"  # noqa: S608 - constant statuses
    " AND updated_at < %s AND status IN (" + ", ".join(f"'{s}'" for s in FINAL) + ")"
)


@get(
    "/data-pipeline/archive/stats",
    policy=allow(Role.ADMIN),
    tags=["data pipeline"],
    operation_id="getArchiveStats",
    summary="What archival has done for the tenant, and what it would do now.",
)
async def archive_stats(
    viewer: NamedDependency[Viewer], operations: NamedDependency[Operations]
) -> ArchiveStats:
    tenant = viewer.tenant
    async with viewer.models.db.connection() as conn:

        async def maybe(query: str, *params: Any) -> tuple[Any, ...] | None:
            return await (await conn.execute(query, params)).fetchone()

        async def one(query: str, *params: Any) -> tuple[Any, ...]:
            row = await maybe(query, *params)
            assert row is not None  # noqa: S101 - an aggregate always returns a row
            return row

        policy = await maybe(_POLICY, tenant)
        defaults = operations.retention_defaults
        retention = RetentionInForce(
            notifications_days=policy[0] if policy else defaults.notifications_days,
            events_days=policy[1] if policy else defaults.events_days,
            default=policy is None,
        )
        cutoff = datetime.now(UTC) - timedelta(days=retention.notifications_days)
        archived = await one(_ARCHIVED, tenant)
        files = await one(_FILES, tenant)
        last = await maybe(_LAST_RUN, tenant)
        waiting = await one(_WAITING, tenant)
        past = await one(_PAST, tenant, cutoff, cutoff)
    schedule = operations.schedules.get("archive")
    next_run = (
        cron_trigger(schedule).get_next_fire_time(None, datetime.now(UTC)) if schedule else None
    )
    return ArchiveStats(
        retention=retention,
        archived=ArchivedCounts(
            notifications=archived[0], events_removed=archived[1], restored=archived[2]
        ),
        files=ArchiveFilesStats(
            count=files[0], rows=files[1], bytes=files[2], oldest_day=files[3], newest_day=files[4]
        ),
        past_retention_now=past[0],
        last_run=ArchiveRun(
            run_id=last[0],
            as_of=last[1],
            finished_at=last[2],
            archived=last[3],
            files=last[4],
            bytes=last[5],
            events_removed=last[6],
            requested_by=last[7],
        )
        if last
        else None,
        runs_waiting=waiting[0],
        next_run=next_run,
    )


ROUTES = [archive_stats]
