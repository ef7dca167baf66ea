"""Retention: how long a tenant's notifications stay in the read models, and their events in
the event store, before archival takes them out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import msgspec

from domain.errors import InvalidValueError
from domain.events import DomainEvent

MIN_DAYS = 7  # shorter would archive notifications still being retried or reported on
MAX_DAYS = 36_500


class RetentionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    notifications_days: int  # a final notification leaves the read models after this
    events_days: int  # its events leave the event store after this


class RetentionChanged(DomainEvent, frozen=True, kw_only=True):
    tenant_id: str
    notifications_days: int
    events_days: int
    changed_by: str


def check_policy(policy: RetentionPolicy) -> RetentionPolicy:
    """The policy if it holds; InvalidValueError naming the field that does not."""
    for field, days in (
        ("notifications_days", policy.notifications_days),
        ("events_days", policy.events_days),
    ):
        if not MIN_DAYS <= days <= MAX_DAYS:
            raise InvalidValueError(field, f"must be {MIN_DAYS} to {MAX_DAYS} days")
    if policy.events_days < policy.notifications_days:
        raise InvalidValueError(
            "events_days",
            f"must be at least notifications_days ({policy.notifications_days}): events are "
            "removed only with or after their notifications",
        )
    return policy


def change_retention(
    current: RetentionPolicy,
    wanted: RetentionPolicy,
    *,
    tenant_id: str,
    by: str,
    at: datetime,
) -> list[DomainEvent]:
    """The event that sets `wanted`; none when it is already the policy."""
    check_policy(wanted)
    if wanted == current:
        return []
    return [
        RetentionChanged(
            at=at,
            tenant_id=tenant_id,
            notifications_days=wanted.notifications_days,
            events_days=wanted.events_days,
            changed_by=by,
        )
    ]


class ArchiveRunCompleted(DomainEvent, frozen=True, kw_only=True):
    """An archival run finished for one tenant: what it archived, and what left the log."""

    tenant_id: str
    run_id: UUID
    as_of: datetime  # the time retention was measured from
    archived: int  # notifications written to archives and taken out of the read models
    files: tuple[str, ...]  # the archives written, under the archive directory
    bytes: int
    events_removed: int  # events of archived notifications that left the event store
    requested_by: str | None  # who asked, for a run by hand


class ArchiveRestored(DomainEvent, frozen=True, kw_only=True):
    """Notifications of one archive file were brought back into the read models."""

    tenant_id: str
    archive: str
    restored: int  # notifications brought back by this restore
    restored_by: str


@dataclass(frozen=True)
class Cutoffs:
    """What is past retention at one time: notifications requested and last changed before
    `notifications`, and the events of archived notifications requested before `events`."""

    notifications: datetime
    events: datetime


def cutoffs(policy: RetentionPolicy, now: datetime) -> Cutoffs:
    return Cutoffs(
        notifications=now - timedelta(days=policy.notifications_days),
        events=now - timedelta(days=policy.events_days),
    )


RETENTION_EVENTS: tuple[type[DomainEvent], ...] = (
    RetentionChanged,
    ArchiveRunCompleted,
    ArchiveRestored,
)
