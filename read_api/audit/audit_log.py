"""The audit log for admins and auditors: who did what, from where, within their tenant.

- `GET /data-pipeline/audit-logs`: entries newest first, filtered by action, actor and
  time, a page at a time.
- `GET /data-pipeline/audit-logs/stats`: how many entries each action and each actor has.

The audit log is a projection of the event log (`projections/audit/`); no route writes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import get
from litestar.di import NamedDependency

from domain.identity.roles import Role
from infrastructure.auth.guard import allow
from infrastructure.web.contract import NAME_FILTER
from infrastructure.web.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_token, paginate
from infrastructure.web.ranges import From, To, check_range
from read_api.viewing import Viewer

AUDIT_READERS = allow(Role.ADMIN, Role.AUDITOR)
TAGS = ["data pipeline"]


class AuditEntry(msgspec.Struct, frozen=True):
    id: str
    at: datetime
    action: str
    actor: str | None
    actor_kind: str | None
    actor_roles: list[str]
    ip: str | None
    user_agent: str | None
    request_id: str | None
    subject: str | None
    count: int  # events the action recorded: a batch's notifications, for one
    details: dict[str, Any]
    position: int  # of its first event in the log


class AuditPage(msgspec.Struct, frozen=True):
    items: list[AuditEntry]
    next_cursor: str | None


class AuditStats(msgspec.Struct, frozen=True):
    total: int
    by_action: dict[str, int]
    by_actor: dict[str, int]  # "" for entries without a known actor (a failed login)


_COLUMNS = (
    "entry_id, at, action, actor, actor_kind, actor_roles, ip, user_agent, request_id,"
    " subject, count, details, first_position"
)


def _between(start: datetime | None, end: datetime | None) -> tuple[list[str], list[Any]]:
    start, end = check_range(start, end)
    where, params = [], []
    if start is not None:
        where.append("at >= %s")
        params.append(start)
    if end is not None:
        where.append("at < %s")
        params.append(end)
    return where, params


@get(
    "/data-pipeline/audit-logs",
    policy=AUDIT_READERS,
    tags=TAGS,
    operation_id="listAuditLogs",
    summary="Who did what, and from where: the tenant's audit log, newest first.",
)
async def audit_logs(
    viewer: NamedDependency[Viewer],
    *,
    action: Annotated[str | None, NAME_FILTER] = None,
    actor: Annotated[str | None, NAME_FILTER] = None,
    start: From = None,
    end: To = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> AuditPage:
    where, params = _between(start, end)
    where.insert(0, "tenant_id = %s")
    params.insert(0, viewer.tenant)
    for column, value in (("action", action), ("actor", actor)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if cursor is not None:
        where.append("first_position < %s")
        params.append(decode_token(cursor, int))
    async with viewer.models.db.connection() as conn:
        rows = await (
            await conn.execute(
                f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)}"  # noqa: S608
                " ORDER BY first_position DESC LIMIT %s",
                (*params, limit + 1),
            )
        ).fetchall()
    page, following = paginate(rows, limit, lambda row: row[-1])
    return AuditPage([AuditEntry(*row) for row in page], following)


@get(
    "/data-pipeline/audit-logs/stats",
    policy=AUDIT_READERS,
    tags=TAGS,
    operation_id="getAuditLogStats",
    summary="How many audit entries each action and each actor has, in a time range.",
)
async def audit_log_stats(
    viewer: NamedDependency[Viewer], *, start: From = None, end: To = None
) -> AuditStats:
    where, params = _between(start, end)
    where.insert(0, "tenant_id = %s")
    params.insert(0, viewer.tenant)
    condition = " AND ".join(where)
    async with viewer.models.db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT 'action', action, count(*) FROM audit_log"  # noqa: S608
                f" WHERE {condition} GROUP BY action"
                " UNION ALL SELECT 'actor', coalesce(actor, ''), count(*) FROM audit_log"
                f" WHERE {condition} GROUP BY coalesce(actor, '')",
                (*params, *params),
            )
        ).fetchall()
    by_action = {name: int(n) for kind, name, n in rows if kind == "action"}
    by_actor = {name: int(n) for kind, name, n in rows if kind == "actor"}
    return AuditStats(total=sum(by_action.values()), by_action=by_action, by_actor=by_actor)


ROUTES = [audit_logs, audit_log_stats]
