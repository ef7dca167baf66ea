"""The ApiKey aggregate: a credential a service client uses, scoped to one tenant and one role.

Only a hash of the secret is ever recorded; the secret itself is shown once, at issue.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

import msgspec

from domain.errors import NotFoundError
from domain.events import DomainEvent
from domain.identity.roles import Role


class ApiKeyIssued(DomainEvent, frozen=True, kw_only=True):
    tenant_id: str
    name: str
    role: Role
    secret_hash: str
    issued_by: str


class ApiKeyRevoked(DomainEvent, frozen=True, kw_only=True):
    revoked_by: str


API_KEY_EVENTS: tuple[type[DomainEvent], ...] = (ApiKeyIssued, ApiKeyRevoked)


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    tenant_id: str
    name: str
    role: Role
    secret_hash: str
    revoked: bool = False
    version: int = 0


def evolve(key: ApiKey | None, event: DomainEvent, key_id: UUID) -> ApiKey:
    match event:
        case ApiKeyIssued():
            return ApiKey(
                id=key_id,
                tenant_id=event.tenant_id,
                name=event.name,
                role=event.role,
                secret_hash=event.secret_hash,
                version=1,
            )
        case ApiKeyRevoked() if key is not None:
            return msgspec.structs.replace(key, revoked=True, version=key.version + 1)
    raise TypeError(f"{type(event).__name__} does not apply here")


def replay(key_id: UUID, events: Iterable[DomainEvent]) -> ApiKey:
    key: ApiKey | None = None
    for event in events:
        key = evolve(key, event, key_id)
    if key is None:
        raise NotFoundError(f"API key {key_id} does not exist")
    return key


def issue(
    *, tenant_id: str, name: str, role: Role, secret_hash: str, by: str, at: datetime
) -> ApiKeyIssued:
    return ApiKeyIssued(
        at=at, tenant_id=tenant_id, name=name, role=role, secret_hash=secret_hash, issued_by=by
    )


def revoke(key: ApiKey, *, by: str, at: datetime) -> list[DomainEvent]:
    if key.revoked:
        return []
    return [ApiKeyRevoked(at=at, revoked_by=by)]
