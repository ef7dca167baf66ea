"""Exports over HTTP: streamed now (`GET /data-pipeline/export/...`), or as a job written to a
file (`POST /data-pipeline/exports`). Every export is limited to the caller's tenant and is
consistent at one log position, which the `Herald-Position` header names."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar
from uuid import UUID

import msgspec
from litestar import get, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.openapi.spec import Schema
from litestar.params import JSONBody, QueryParameter
from litestar.response import Stream

from commands.exports.handlers import DeliveredExport, RequestExport, StreamExport
from domain.errors import InvalidValueError
from domain.identity.roles import Role
from domain.notifications.state import Status
from domain.notifications.values import Channel
from infrastructure.auth.guard import allow
from infrastructure.exports.formats import CONTENT_TYPES, Format
from infrastructure.exports.stream import ExportSpec, Kind, PositionNotReachedError
from infrastructure.web.commands import Commands
from infrastructure.web.contract import MAX_POSITION, NAME_FILTER, NameFilter
from infrastructure.web.ranges import From, To, check_range

EXPORTERS = allow(Role.ADMIN, Role.OPERATOR, Role.AUDITOR)
TAGS = ["data pipeline"]
ACCEPTED = 202
POSITION_HEADER = "Herald-Position"

FormatParam = Annotated[Format, QueryParameter(description="csv, ndjson, json or parquet.")]
Position = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=MAX_POSITION,
        description="Export the read model as of this log position; default: the latest.",
    ),
]
Archived = Annotated[
    bool, QueryParameter(description="Also rows archived past retention, from their archives.")
]


class ExportRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Kind
    format: Format = "csv"
    from_: datetime | None = msgspec.field(default=None, name="from")
    to: datetime | None = None
    status: Status | None = None
    channel: Channel | None = None
    action: NameFilter | None = None
    actor: NameFilter | None = None
    position: Annotated[int, msgspec.Meta(ge=0, le=MAX_POSITION)] | None = None
    include_archived: bool = False

    # Read by infrastructure/web/struct_schemas.py: archives hold notifications only.
    OPENAPI_RULES: ClassVar[list[Schema]] = [
        Schema(
            any_of=[
                Schema(properties={"include_archived": Schema(const=False)}),
                Schema(properties={"kind": Schema(const="notifications")}),
            ]
        )
    ]


class ExportJobAccepted(msgspec.Struct, frozen=True):
    id: UUID
    status: str
    requested_at: datetime
    url: str  # where to follow its progress


async def _stream(commands: Commands, spec: ExportSpec) -> Stream:
    start, end = check_range(spec.start, spec.end)
    spec = msgspec.structs.replace(spec, start=start, end=end)
    try:
        delivered = await commands.handle(StreamExport(spec=spec))
    except PositionNotReachedError as exc:
        raise ValidationException(
            "position not reached", extra=[{"key": "position", "message": str(exc)}]
        ) from None
    return _response(delivered)


def _response(delivered: DeliveredExport) -> Stream:
    spec = delivered.spec
    name = f"herald-{spec.kind}-{delivered.position}.{spec.format}"
    return Stream(
        delivered.chunks,
        media_type=CONTENT_TYPES[spec.format],
        headers={
            POSITION_HEADER: str(delivered.position),
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


@get(
    "/data-pipeline/export/notifications",
    policy=EXPORTERS,
    content_types=tuple(CONTENT_TYPES.values()),
    tags=TAGS,
    operation_id="exportNotifications",
    summary="The tenant's notifications as of one log position, streamed in any format.",
)
async def export_notifications(
    commands: NamedDependency[Commands],
    *,
    format: FormatParam = "csv",
    start: From = None,
    end: To = None,
    status: Annotated[Status | None, QueryParameter()] = None,
    channel: Annotated[Channel | None, QueryParameter()] = None,
    position: Position = None,
    include_archived: Archived = False,
) -> Stream:
    spec = ExportSpec(
        kind="notifications",
        format=format,
        tenant=commands.caller.tenant_id,
        start=start,
        end=end,
        status=status.value if status else None,
        channel=channel.value if channel else None,
        position=position,
        include_archived=include_archived,
    )
    return await _stream(commands, spec)


@get(
    "/data-pipeline/export/events",
    policy=EXPORTERS,
    content_types=tuple(CONTENT_TYPES.values()),
    tags=TAGS,
    operation_id="exportEvents",
    summary="The tenant's notification events up to one log position, streamed.",
)
async def export_events(
    commands: NamedDependency[Commands],
    *,
    format: FormatParam = "csv",
    start: From = None,
    end: To = None,
    position: Position = None,
) -> Stream:
    spec = ExportSpec(
        kind="events",
        format=format,
        tenant=commands.caller.tenant_id,
        start=start,
        end=end,
        position=position,
    )
    return await _stream(commands, spec)


@get(
    "/data-pipeline/export/audit-logs",
    policy=EXPORTERS,
    content_types=tuple(CONTENT_TYPES.values()),
    tags=TAGS,
    operation_id="exportAuditLogs",
    summary="The tenant's audit log as of one position of the audit projection, streamed.",
)
async def export_audit_logs(
    commands: NamedDependency[Commands],
    *,
    format: FormatParam = "csv",
    start: From = None,
    end: To = None,
    action: Annotated[str | None, NAME_FILTER] = None,
    actor: Annotated[str | None, NAME_FILTER] = None,
    position: Position = None,
) -> Stream:
    spec = ExportSpec(
        kind="audit-logs",
        format=format,
        tenant=commands.caller.tenant_id,
        start=start,
        end=end,
        action=action,
        actor=actor,
        position=position,
    )
    return await _stream(commands, spec)


@post(
    "/data-pipeline/exports",
    policy=EXPORTERS,
    tags=TAGS,
    status_code=ACCEPTED,
    operation_id="requestExport",
    summary="Ask for a large export as a job; a scheduler writes its file.",
    description="GET the returned url for its progress and, when done, its manifest; then "
    "GET url/download. Files expire after HERALD_EXPORT_TTL_H.",
)
async def request_export(
    data: JSONBody[ExportRequest], commands: NamedDependency[Commands]
) -> ExportJobAccepted:
    start, end = check_range(data.from_, data.to)
    if data.include_archived and data.kind != "notifications":
        raise InvalidValueError(
            "include_archived", "archives hold notifications only; events leave with retention"
        )
    caller = commands.caller
    spec = ExportSpec(
        kind=data.kind,
        format=data.format,
        tenant=caller.tenant_id,
        start=start,
        end=end,
        status=data.status.value if data.status else None,
        channel=data.channel.value if data.channel else None,
        action=data.action,
        actor=data.actor,
        position=data.position,
        include_archived=data.include_archived,
    )
    accepted = await commands.handle(RequestExport(spec=spec, requested_by=caller.subject))
    url = f"/data-pipeline/exports/{accepted.export_id}"
    return ExportJobAccepted(accepted.export_id, "pending", accepted.requested_at, url)


ROUTES = [export_notifications, export_events, export_audit_logs, request_export]
