"""Export use cases. Each export is recorded as an event, so the audit trail has who exported
what, with which filters, at which position and how many rows.

Opening an export (a snapshot of a read model at one position, rendered) is the projections'
work; the composition root hands it in as `exporter`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import msgspec
from uuid_utils.compat import uuid7

from domain.exports import ExportDelivered, ExportRequested
from infrastructure.eventstore import meta
from infrastructure.eventstore.store import EventStore
from infrastructure.exports.stream import ExportSpec, ExportStream
from infrastructure.messagebus import Command, Handlers

Exporter = Callable[[ExportSpec], ExportStream]

_REQUEST = """
INSERT INTO export_jobs (export_id, tenant_id, spec, status, requested_by, meta, requested_at)
VALUES (%s, %s, %s, 'pending', %s, %s, %s)
"""


@dataclass(frozen=True)
class DeliveredExport:
    spec: ExportSpec
    position: int  # the read model exactly as of this log position
    chunks: Iterator[bytes]


@dataclass(frozen=True)
class ExportAccepted:
    export_id: UUID
    requested_at: datetime


class StreamExport(Command[DeliveredExport], frozen=True, kw_only=True):
    spec: ExportSpec


class RequestExport(Command[ExportAccepted], frozen=True, kw_only=True):
    spec: ExportSpec
    requested_by: str


def stream_export(cmd: StreamExport, *, exporter: Exporter, store: EventStore) -> DeliveredExport:
    """The export's bytes; when the last one is out, or the reader gives up, it is recorded.
    Raises PositionNotReachedError for a position its read model has not reached."""
    stream = exporter(cmd.spec)
    about = meta.current()

    def chunks() -> Iterator[bytes]:
        try:
            yield from stream
        finally:
            with meta.bound(about):
                record_delivery(stream, store=store)

    return DeliveredExport(cmd.spec, stream.position, chunks())


def record_delivery(stream: ExportStream, *, store: EventStore) -> None:
    spec = stream.spec
    manifest = stream.manifest() if stream.complete else None
    delivered = ExportDelivered(
        at=datetime.now(UTC),
        tenant_id=spec.tenant,
        kind=spec.kind,
        format=spec.format,
        filters=spec.filters(),
        position=stream.position,
        rows=manifest.rows if manifest else 0,
        bytes=stream.bytes,
        sha256=manifest.sha256 if manifest else "",
        complete=manifest is not None,
    )
    store.append(uuid7(), 0, [delivered])


def request_export(cmd: RequestExport, *, store: EventStore) -> ExportAccepted:
    """Queue an export job; a scheduler writes its file. The job row commits with the event."""
    export_id, now = uuid7(), datetime.now(UTC)
    spec = cmd.spec
    requested = ExportRequested(
        at=now,
        tenant_id=spec.tenant,
        export_id=export_id,
        kind=spec.kind,
        format=spec.format,
        filters=spec.filters(),
        position=spec.position,
    )
    # Sealed as the event's own metadata is: a job row keeps no client address in the clear.
    about, _ = store.codec.encode_all([(export_id, requested)], meta.current())
    row = (
        export_id,
        spec.tenant,
        msgspec.json.encode(spec).decode(),
        cmd.requested_by,
        about,
        now,
    )
    store.append(export_id, 0, [requested], writes=[(_REQUEST, row)])
    return ExportAccepted(export_id, now)


HANDLERS: Handlers = {StreamExport: stream_export, RequestExport: request_export}
