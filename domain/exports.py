"""Exports: the facts of handing data out, so that every export is in the audit trail."""

from __future__ import annotations

from uuid import UUID

from domain.events import DomainEvent


class ExportDelivered(DomainEvent, frozen=True, kw_only=True):
    """An export was streamed to its requester (or written by the CLI), to its end or not."""

    tenant_id: str
    kind: str
    format: str
    filters: dict[str, str]
    position: int
    rows: int  # 0 when it did not reach its end
    bytes: int
    sha256: str
    complete: bool


class ExportRequested(DomainEvent, frozen=True, kw_only=True):
    """An export was asked for as a job, to be written to a file."""

    tenant_id: str
    export_id: UUID
    kind: str
    format: str
    filters: dict[str, str]
    position: int | None  # None: the latest the read model has reached when it runs


class ExportCompleted(DomainEvent, frozen=True, kw_only=True):
    """An export job's file is written; its manifest says what it holds."""

    tenant_id: str
    export_id: UUID
    position: int
    rows: int
    bytes: int
    sha256: str


EXPORT_EVENTS: tuple[type[DomainEvent], ...] = (ExportDelivered, ExportRequested, ExportCompleted)
