"""Sessions: the facts of logging in and out, for the audit trail.

Each is recorded in a stream of its own (one event, version 1): a login concerns no
aggregate's invariants, and many at once must never contend for one stream.
"""

from __future__ import annotations

import enum
from uuid import UUID

from domain.events import DomainEvent


class LoginRefusal(enum.StrEnum):
    UNKNOWN_ACCOUNT = "unknown_account"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 - a reason, not a password
    DISABLED = "disabled"


class LoginSucceeded(DomainEvent, frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID
    email: str


class LoginFailed(DomainEvent, frozen=True, kw_only=True):
    """The caller is told only that it failed; the audit trail knows why."""

    tenant_id: str
    email: str
    reason: LoginRefusal
    user_id: UUID | None = None  # when the account exists


class TokensRefreshed(DomainEvent, frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID


class LoggedOut(DomainEvent, frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID


SESSION_EVENTS: tuple[type[DomainEvent], ...] = (
    LoginSucceeded,
    LoginFailed,
    TokensRefreshed,
    LoggedOut,
)
