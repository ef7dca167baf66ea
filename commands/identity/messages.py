"""Identity commands: what a caller asks for, in the imperative."""

from __future__ import annotations

from uuid import UUID

import msgspec

from domain.identity.roles import Role


class RegisterUser(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    email: str
    password: str
    roles: tuple[Role, ...] = (Role.USER,)
    registered_by: str | None = None


class GrantRole(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID
    role: Role
    granted_by: str


class RevokeRole(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID
    role: Role
    revoked_by: str


class IssueApiKey(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    name: str
    role: Role
    issued_by: str


class RevokeApiKey(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    key_id: UUID
    revoked_by: str


class ChangePassword(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID
    current_password: str
    new_password: str


class DisableUser(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    user_id: UUID
    reason: str
    disabled_by: str
