"""Operational facts: what an operator asked the system itself to do."""

from __future__ import annotations

from uuid import UUID

from domain.events import DomainEvent


class JobRunRequested(DomainEvent, frozen=True, kw_only=True):
    """Someone asked for a scheduled job to run now, besides its schedule."""

    tenant_id: str  # the requester's
    job: str
    run_id: UUID
    requested_by: str


OPERATION_EVENTS: tuple[type[DomainEvent], ...] = (JobRunRequested,)
