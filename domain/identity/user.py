"""The User aggregate: a person or service account in one tenant, with roles and a password.

State is immutable: each decision function checks the rules against the current `User`
and returns the events to record; `evolve` applies one event, and `replay` rebuilds a
user from its whole stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

import msgspec

from domain.errors import ConflictError, NotFoundError
from domain.events import DomainEvent
from domain.identity.roles import Role


class UserRegistered(DomainEvent, frozen=True, kw_only=True):
    tenant_id: str
    email: str
    password_hash: str
    roles: tuple[Role, ...]
    registered_by: str | None = None  # None: self-registration


class RoleGranted(DomainEvent, frozen=True, kw_only=True):
    role: Role
    granted_by: str


class RoleRevoked(DomainEvent, frozen=True, kw_only=True):
    role: Role
    revoked_by: str


class PasswordChanged(DomainEvent, frozen=True, kw_only=True):
    password_hash: str


class UserDisabled(DomainEvent, frozen=True, kw_only=True):
    disabled_by: str
    reason: str


class UserErased(DomainEvent, frozen=True, kw_only=True):
    erased_by: str


UserEvent = UserRegistered | RoleGranted | RoleRevoked | PasswordChanged | UserDisabled | UserErased
USER_EVENTS: tuple[type[DomainEvent], ...] = (
    UserRegistered,
    RoleGranted,
    RoleRevoked,
    PasswordChanged,
    UserDisabled,
    UserErased,
)


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    tenant_id: str
    email: str
    password_hash: str
    roles: frozenset[Role]
    disabled: bool = False
    erased: bool = False
    version: int = 0  # how many events the stream holds


def evolve(user: User | None, event: DomainEvent, user_id: UUID) -> User:
    match event:
        case UserRegistered():
            return User(
                id=user_id,
                tenant_id=event.tenant_id,
                email=event.email,
                password_hash=event.password_hash,
                roles=frozenset(event.roles),
                version=1,
            )
    if user is None:
        raise ValueError(f"{type(event).__name__} cannot start a user's stream")
    version = user.version + 1
    match event:
        case RoleGranted():
            return msgspec.structs.replace(user, roles=user.roles | {event.role}, version=version)
        case RoleRevoked():
            return msgspec.structs.replace(user, roles=user.roles - {event.role}, version=version)
        case PasswordChanged():
            return msgspec.structs.replace(user, password_hash=event.password_hash, version=version)
        case UserDisabled():
            return msgspec.structs.replace(user, disabled=True, version=version)
        case UserErased():
            return msgspec.structs.replace(
                user, email="", password_hash="", roles=frozenset(), erased=True, version=version
            )
    raise TypeError(f"not a user event: {type(event).__name__}")


def replay(user_id: UUID, events: Iterable[DomainEvent]) -> User:
    user: User | None = None
    for event in events:
        user = evolve(user, event, user_id)
    if user is None:
        raise NotFoundError(f"user {user_id} does not exist")
    return user


def register(
    *,
    tenant_id: str,
    email: str,
    password_hash: str,
    roles: Iterable[Role],
    at: datetime,
    registered_by: str | None = None,
) -> UserRegistered:
    return UserRegistered(
        at=at,
        tenant_id=tenant_id,
        email=email,
        password_hash=password_hash,
        roles=tuple(sorted(set(roles))),
        registered_by=registered_by,
    )


def check_active(user: User) -> None:
    if user.erased:
        raise NotFoundError(f"user {user.id} does not exist")
    if user.disabled:
        raise ConflictError(f"user {user.id} is disabled")


def grant_role(user: User, role: Role, *, by: str, at: datetime) -> list[DomainEvent]:
    check_active(user)
    if role in user.roles:
        return []  # granting what is held changes nothing, so records nothing
    return [RoleGranted(at=at, role=role, granted_by=by)]


def revoke_role(user: User, role: Role, *, by: str, at: datetime) -> list[DomainEvent]:
    check_active(user)
    if role not in user.roles:
        return []
    return [RoleRevoked(at=at, role=role, revoked_by=by)]


def change_password(user: User, password_hash: str, *, at: datetime) -> list[DomainEvent]:
    check_active(user)
    return [PasswordChanged(at=at, password_hash=password_hash)]


def disable(user: User, *, by: str, reason: str, at: datetime) -> list[DomainEvent]:
    if user.erased:
        raise NotFoundError(f"user {user.id} does not exist")
    if user.disabled:
        return []
    return [UserDisabled(at=at, disabled_by=by, reason=reason)]


def erase(user: User, *, by: str, at: datetime) -> list[DomainEvent]:
    if user.erased:
        return []
    return [UserErased(at=at, erased_by=by)]
