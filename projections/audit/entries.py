"""Which events the audit log records, and the entry each command makes: pure, no I/O.

An event is audited when an admin or an operator recorded it (its metadata names the roles
the principal acted with), and every login is, successful or failed, whoever tried. All the
events one command recorded make one entry, keyed by the command's id: a batch of ten
thousand notifications is one entry with a count of ten thousand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from domain.events import DomainEvent
from domain.exports import ExportCompleted, ExportDelivered, ExportRequested
from domain.identity.roles import Role
from domain.identity.session import LoginFailed, LoginSucceeded
from domain.retention import ArchiveRestored, ArchiveRunCompleted
from infrastructure.eventstore.meta import EventMeta

AUDITED_ROLES = frozenset({Role.ADMIN.value, Role.OPERATOR.value})
# Logins, whoever tries; exports, whoever exports; archival, whoever (or whatever) runs it.
ALWAYS_AUDITED = frozenset(
    {
        LoginSucceeded.__name__,
        LoginFailed.__name__,
        ExportDelivered.__name__,
        ExportRequested.__name__,
        ExportCompleted.__name__,
        ArchiveRunCompleted.__name__,
        ArchiveRestored.__name__,
    }
)

ACTIONS = {
    "NotificationRequested": "notification.requested",
    "NotificationCancelled": "notification.cancelled",
    "RetryRequested": "notification.retry_requested",
    "UserRegistered": "user.registered",
    "RoleGranted": "user.role_granted",
    "RoleRevoked": "user.role_revoked",
    "PasswordChanged": "user.password_changed",
    "UserDisabled": "user.disabled",
    "UserErased": "user.erased",
    "ApiKeyIssued": "api_key.issued",
    "ApiKeyRevoked": "api_key.revoked",
    "LoginSucceeded": "login.succeeded",
    "LoginFailed": "login.failed",
    "TokensRefreshed": "session.refreshed",
    "LoggedOut": "session.logged_out",
    "JobRunRequested": "job.run_requested",
    "ExportDelivered": "export.delivered",
    "ExportRequested": "export.requested",
    "ExportCompleted": "export.completed",
    "RetentionChanged": "retention.changed",
    "ArchiveRunCompleted": "archive.completed",
    "ArchiveRestored": "archive.restored",
    "SubjectErasureRequested": "subject.erasure_requested",
    "SubjectErased": "subject.erased",
}
# What an entry shows of its first event: small, and never a secret or a message's content.
DETAILS = {
    "NotificationRequested": ("channel", "priority"),
    "NotificationCancelled": ("reason",),
    "UserRegistered": ("email", "roles"),
    "RoleGranted": ("role",),
    "RoleRevoked": ("role",),
    "UserDisabled": ("reason",),
    "ApiKeyIssued": ("name", "role"),
    "LoginSucceeded": ("email",),
    "LoginFailed": ("email", "reason"),
    "JobRunRequested": ("job", "run_id"),
    "ExportDelivered": ("kind", "format", "filters", "position", "rows", "sha256", "complete"),
    "ExportRequested": ("export_id", "kind", "format", "filters", "position"),
    "ExportCompleted": ("position", "rows", "sha256"),
    "RetentionChanged": ("notifications_days", "events_days"),
    "ArchiveRunCompleted": ("run_id", "as_of", "archived", "bytes", "events_removed"),
    "ArchiveRestored": ("archive", "restored"),
    "SubjectErasureRequested": ("erasure_id", "subject_kind", "subject_ref"),
    "SubjectErased": ("erasure_id",),
}


@dataclass(frozen=True, slots=True)
class Logged:
    """One event as the log holds it: where, what, and who recorded it."""

    position: int
    stream_id: UUID
    name: str
    event: DomainEvent
    meta: EventMeta | None


@dataclass
class Entry:
    entry_id: str
    tenant_id: str
    at: datetime
    action: str
    actor: str | None
    actor_kind: str | None
    actor_roles: list[str]
    ip: str | None
    user_agent: str | None
    request_id: str | None
    subject: str | None
    details: dict[str, Any]
    first_position: int
    last_position: int
    count: int = field(default=1)


def audited(name: str, meta: EventMeta | None) -> bool:
    """Whether the event `name`, recorded with `meta`, belongs in the audit log."""
    if name in ALWAYS_AUDITED:
        return True
    return meta is not None and not AUDITED_ROLES.isdisjoint(meta.roles)


def entries(logged: Iterable[Logged]) -> list[Entry]:
    """The entries these events (in log order, audited ones only) make, merged by command."""
    found: dict[str, Entry] = {}
    for item in logged:
        meta = item.meta or EventMeta()
        key = meta.command_id or f"position:{item.position}"
        entry = found.get(key)
        if entry is None:
            found[key] = _entry(key, item, meta)
        else:
            entry.count += 1
            entry.last_position = item.position
            # A later event of the command adds what it knows (an export job's row count).
            entry.details.update(_details(item))
    return list(found.values())


def _entry(key: str, item: Logged, meta: EventMeta) -> Entry:
    event = item.event
    data = msgspec.to_builtins(event)
    # Session events live in streams of their own and name the user they concern.
    if "user_id" in data:
        subject = str(data["user_id"]) if data["user_id"] else None
    else:
        subject = str(item.stream_id)
    return Entry(
        entry_id=key,
        tenant_id=meta.tenant or str(data.get("tenant_id", "")),
        at=event.at,
        action=ACTIONS.get(item.name) or _snake(item.name),
        actor=meta.actor,
        actor_kind=meta.actor_kind,
        actor_roles=list(meta.roles),
        ip=meta.ip,
        user_agent=meta.user_agent,
        request_id=meta.request_id,
        subject=subject,
        details=_details(item),
        first_position=item.position,
        last_position=item.position,
    )


def _details(item: Logged) -> dict[str, Any]:
    data = msgspec.to_builtins(item.event)
    return {
        f: list(data[f]) if isinstance(data[f], tuple) else data[f]
        for f in DETAILS.get(item.name, ())
        if data.get(f) is not None
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
