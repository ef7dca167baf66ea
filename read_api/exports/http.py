"""GET /data-pipeline/exports/{id} and its download: an export job's progress and manifest,
and its file while it has not expired. Within the caller's tenant: another tenant's id is
404, as if it did not exist."""

from __future__ import annotations

import asyncio
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.params import FromPath
from litestar.response import File
from litestar.status_codes import HTTP_410_GONE

from domain.identity.roles import Role
from infrastructure.auth.guard import allow
from infrastructure.exports.formats import CONTENT_TYPES
from infrastructure.web.contract import problems
from read_api.viewing import Viewer

EXPORTERS = allow(Role.ADMIN, Role.OPERATOR, Role.AUDITOR)
TAGS = ["data pipeline"]


class ExportJob(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    kind: str
    format: str
    filters: dict[str, Any]
    position: int | None  # asked for; the manifest's is the one it was written at
    status: str  # pending, running, done, failed, expired
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    attempts: int
    bytes_written: int  # progress while it runs
    manifest: dict[str, Any] | None  # position, filters, rows, bytes, sha256, once done
    error: str | None
    download: str | None  # while it can be downloaded


_ROW = (
    "SELECT spec, status, requested_at, started_at, finished_at, expires_at, attempts,"
    " bytes_written, manifest, error, file FROM export_jobs"
    " WHERE export_id = %s AND tenant_id = %s"
)


async def _job(viewer: Viewer, export_id: UUID) -> tuple[ExportJob, str | None]:
    async with viewer.models.db.connection() as conn:
        row = await (await conn.execute(_ROW, (export_id, viewer.tenant))).fetchone()
    if row is None:
        raise NotFoundException(f"export {export_id} does not exist")
    spec, status, requested, started, finished, expires, attempts, written = row[:8]
    manifest, error, file = row[8:]
    given = {
        k: v
        for k, v in spec.items()
        if k not in {"kind", "format", "tenant", "position"} and v not in (None, False)
    }
    job = ExportJob(
        id=export_id,
        kind=spec["kind"],
        format=spec["format"],
        filters=given,
        position=spec.get("position"),
        status=status,
        requested_at=requested,
        started_at=started,
        finished_at=finished,
        expires_at=expires,
        attempts=attempts,
        bytes_written=written,
        manifest=manifest,
        error=error,
        download=f"/data-pipeline/exports/{export_id}/download" if status == "done" else None,
    )
    return job, file


@get(
    "/data-pipeline/exports/{export_id:uuid}",
    policy=EXPORTERS,
    tags=TAGS,
    operation_id="getExport",
    summary="An export job: its progress and, once done, its manifest.",
)
async def get_export(export_id: FromPath[UUID], viewer: NamedDependency[Viewer]) -> ExportJob:
    return (await _job(viewer, export_id))[0]


@get(
    "/data-pipeline/exports/{export_id:uuid}/download",
    policy=EXPORTERS,
    tags=TAGS,
    content_types=tuple(CONTENT_TYPES.values()),
    responses=problems(HTTPStatus.CONFLICT, HTTPStatus.GONE),
    operation_id="downloadExport",
    summary="An export job's file; 409 until it is written, 410 once it has expired.",
)
async def download_export(export_id: FromPath[UUID], viewer: NamedDependency[Viewer]) -> File:
    job, file = await _job(viewer, export_id)
    if job.status in {"pending", "running"}:
        raise ClientException(
            f"export {export_id} is {job.status}; try again later", status_code=409
        )
    if job.status != "done" or file is None or not await asyncio.to_thread(Path(file).is_file):
        raise HTTPException(f"export {export_id} is {job.status}", status_code=HTTP_410_GONE)
    manifest = job.manifest or {}
    return File(
        path=file,
        filename=f"herald-{job.kind}-{manifest.get('position', 0)}.{job.format}",
        media_type=CONTENT_TYPES.get(job.format, "application/octet-stream"),  # type: ignore[call-overload]
        headers={
            "Herald-Position": str(manifest.get("position", "")),
            "Digest": f"sha-256={manifest.get('sha256', '')}",
        },
    )


ROUTES = [get_export, download_export]
