"""Erasures as admins and auditors see them: one with its progress and receipt, the tenant's
list, newest first, and GET /data-pipeline/anonymization/stats (the seed's path). Within the
caller's tenant: another tenant's erasure is 404, as if it did not exist."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from domain.identity.roles import Role
from infrastructure.auth.guard import allow
from infrastructure.web.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_token, paginate
from read_api.viewing import Viewer

WATCHERS = allow(Role.ADMIN, Role.AUDITOR)
TAGS = ["data pipeline"]


class Erasure(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    subject_kind: str  # recipient or user
    subject_ref: str  # the recipient's keyed hash (hex), or the user's id
    status: str  # pending, running, done
    step: str  # the step it is at; `done` once the receipt is recorded
    requested_by: str
    requested_at: datetime
    completed_at: datetime | None
    attempts: int  # how many times a scheduler took it up
    receipt: dict[str, Any] | None  # once done: what each store held and what was scrubbed


class ErasurePage(msgspec.Struct, frozen=True):
    items: list[Erasure]
    next_cursor: str | None


_COLUMNS = (
    "erasure_id, subject_kind, subject_ref, status, step, requested_by, requested_at,"
    " completed_at, attempts, receipt"
)


def _erasure(row: Any) -> Erasure:
    return Erasure(
        id=row[0],
        subject_kind=row[1],
        subject_ref=row[2],
        status=row[3],
        step=row[4],
        requested_by=row[5],
        requested_at=row[6],
        completed_at=row[7],
        attempts=row[8],
        receipt=row[9],
    )


@get(
    "/data-pipeline/erasures/{erasure_id:uuid}",
    policy=WATCHERS,
    tags=TAGS,
    operation_id="getErasure",
    summary="An erasure: the step it is at, then its receipt.",
)
async def get_erasure(erasure_id: FromPath[UUID], viewer: NamedDependency[Viewer]) -> Erasure:
    async with viewer.models.db.connection() as conn:
        row = await (
            await conn.execute(
                f"SELECT {_COLUMNS} FROM erasures WHERE erasure_id = %s AND tenant_id = %s",  # noqa: S608
                (erasure_id, viewer.tenant),
            )
        ).fetchone()
    if row is None:
        raise NotFoundException(f"erasure {erasure_id} does not exist")
    return _erasure(row)


@get(
    "/data-pipeline/erasures",
    policy=WATCHERS,
    tags=TAGS,
    operation_id="listErasures",
    summary="The tenant's erasures, newest first, a page at a time.",
)
async def list_erasures(
    viewer: NamedDependency[Viewer], limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> ErasurePage:
    where = "tenant_id = %s"
    params: list[Any] = [viewer.tenant]
    if cursor is not None:
        at, after = decode_token(cursor, tuple[datetime, UUID])
        where += " AND (requested_at, erasure_id) < (%s, %s)"
        params += [at, after]
    async with viewer.models.db.connection() as conn:
        rows = await (
            await conn.execute(
                f"SELECT {_COLUMNS} FROM erasures WHERE {where}"  # noqa: S608
                " ORDER BY requested_at DESC, erasure_id DESC LIMIT %s",
                (*params, limit + 1),
            )
        ).fetchall()
    page, following = paginate(rows, limit, lambda row: (row[6], row[0]))
    return ErasurePage([_erasure(row) for row in page], following)


class AnonymizationStats(msgspec.Struct, frozen=True, kw_only=True):
    total: int  # erasures asked for
    completed: int
    in_progress: int
    recipients: int  # completed erasures of recipients
    users: int  # completed erasures of user accounts
    notifications_erased: int  # by those erasures
    keys_destroyed: int  # data keys of the tenant destroyed
    nothing_found: int  # completed erasures whose subject Herald held nothing of
    last_completed_at: datetime | None
    mean_duration_s: float | None  # from request to receipt


_STATS = """
SELECT count(*),
       count(*) FILTER (WHERE status = 'done'),
       count(*) FILTER (WHERE status <> 'done'),
       count(*) FILTER (WHERE status = 'done' AND subject_kind = 'recipient'),
       count(*) FILTER (WHERE status = 'done' AND subject_kind = 'user'),
       coalesce(sum((receipt->'stores'->'notifications'->>'scrubbed')::bigint), 0),
       count(*) FILTER (WHERE (receipt->>'nothing_found')::boolean),
       max(completed_at),
       avg(extract(epoch FROM completed_at - requested_at))
FROM erasures WHERE tenant_id = %s
"""
_DESTROYED = "SELECT count(*) FROM subject_keys WHERE tenant_id = %s AND wrapped IS NULL"


@get(
    "/data-pipeline/anonymization/stats",
    policy=WATCHERS,
    tags=TAGS,
    operation_id="getAnonymizationStats",
    summary="How many erasures the tenant asked for, finished and found, and what they took.",
)
async def anonymization_stats(viewer: NamedDependency[Viewer]) -> AnonymizationStats:
    async with viewer.models.db.connection() as conn:
        row = await (await conn.execute(_STATS, (viewer.tenant,))).fetchone()
        keys = await (await conn.execute(_DESTROYED, (viewer.tenant,))).fetchone()
    assert row is not None  # noqa: S101 - an aggregate always answers
    assert keys is not None  # noqa: S101 - an aggregate always answers
    return AnonymizationStats(
        total=row[0],
        completed=row[1],
        in_progress=row[2],
        recipients=row[3],
        users=row[4],
        notifications_erased=int(row[5]),
        keys_destroyed=keys[0],
        nothing_found=row[6],
        last_completed_at=row[7],
        mean_duration_s=float(row[8]) if row[8] is not None else None,
    )


ROUTES = [get_erasure, list_erasures, anonymization_stats]
