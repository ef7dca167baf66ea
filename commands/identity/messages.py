"""Identity commands: what a caller asks for, in the imperative, and what each returns."""

from __future__ import annotations

from uuid import UUID

from domain.identity.api_key import ApiKey
from domain.identity.roles import Role
from domain.identity.user import User
from infrastructure.messagebus import Command


class RegisterUser(Command[User], frozen=True, kw_only=True):
    tenant_id: str
    email: str
    password: str
    roles: tuple[Role, ...] = (Role.USER,)
    registered_by: str | None = None


class GrantRole(Command[User], frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID
    role: Role
    granted_by: str


class RevokeRole(Command[User], frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID
    role: Role
    revoked_by: str


class IssueApiKey(Command[tuple[ApiKey, str]], frozen=True, kw_only=True):
    """Returns the key and its full string, which is shown once and never stored."""

    tenant_id: str
    name: str
    role: Role
    issued_by: str


class RevokeApiKey(Command[ApiKey], frozen=True, kw_only=True):
    tenant_id: str
    key_id: UUID
    revoked_by: str


class ChangePassword(Command[User], frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID
    current_password: str
    new_password: str


class DisableUser(Command[User], frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID
    reason: str
    disabled_by: str
