"""Identity use cases. Each loads what it needs, lets the domain decide, and appends the
resulting events together with the read-model row they imply, in one transaction.

The event store is synchronous (the eventsourcing library's recorder): handlers that only
write are plain functions, which the message bus runs in a worker thread. Handlers that
also withdraw access (a revoked role, a disabled user, a changed password, a revoked key)
are async: they write in a thread, then revoke the tokens at once in every process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID, uuid4

from commands.identity.messages import (
    ChangePassword,
    DisableUser,
    GrantRole,
    IssueApiKey,
    RegisterUser,
    RevokeApiKey,
    RevokeRole,
)
from domain.errors import ConflictError, InvalidValueError, NotFoundError
from domain.events import DomainEvent
from domain.identity import api_key as keys
from domain.identity import user as users
from domain.identity.roles import check_password, check_tenant, normalise_email
from infrastructure.auth.api_keys import CACHE_TTL_S, format_api_key, hash_secret, new_secret
from infrastructure.auth.passwords import PasswordHasher
from infrastructure.auth.revocation import Revocations
from infrastructure.eventstore.store import (
    ConcurrencyError,
    ConstraintViolationError,
    EventStore,
    Write,
)
from infrastructure.messagebus import Handlers

_ATTEMPTS = 3  # reload-and-decide rounds before a concurrent writer's win is reported


class EmailTakenError(ConflictError, InvalidValueError):
    def __init__(self) -> None:
        InvalidValueError.__init__(self, "email", "is already registered in this tenant")


class KeyNameTakenError(ConflictError, InvalidValueError):
    def __init__(self) -> None:
        InvalidValueError.__init__(self, "name", "an active API key of this tenant has this name")


def _now() -> datetime:
    return datetime.now(UTC)


def user_row(user: users.User, at: datetime) -> Write:
    status = "erased" if user.erased else "disabled" if user.disabled else "active"
    return (
        "INSERT INTO users (user_id, tenant_id, email, password_hash, roles, status, version,"
        " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email,"
        " password_hash = EXCLUDED.password_hash, roles = EXCLUDED.roles,"
        " status = EXCLUDED.status, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
        " WHERE users.version < EXCLUDED.version",
        (
            user.id,
            user.tenant_id,
            user.email or None,
            user.password_hash or None,
            sorted(user.roles),
            status,
            user.version,
            at,
            at,
        ),
    )


def _key_row(key: keys.ApiKey, created_by: str, at: datetime) -> Write:
    return (
        "INSERT INTO api_keys (key_id, tenant_id, name, role, secret_hash, status, created_by,"
        " version, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (key_id) DO UPDATE SET status = EXCLUDED.status,"
        " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
        " WHERE api_keys.version < EXCLUDED.version",
        (
            key.id,
            key.tenant_id,
            key.name,
            key.role.value,
            key.secret_hash,
            "revoked" if key.revoked else "active",
            created_by,
            key.version,
            at,
            at,
        ),
    )


def register_user(cmd: RegisterUser, *, store: EventStore, hasher: PasswordHasher) -> users.User:
    tenant_id = check_tenant(cmd.tenant_id)
    email = normalise_email(cmd.email)
    password = check_password(cmd.password)
    event = users.register(
        tenant_id=tenant_id,
        email=email,
        password_hash=hasher.hash(password),
        roles=cmd.roles,
        at=_now(),
        registered_by=cmd.registered_by,
    )
    user_id = uuid4()
    user = users.evolve(None, event, user_id)
    try:
        store.append(user_id, 0, [event], writes=[user_row(user, event.at)])
    except ConstraintViolationError as exc:
        if exc.constraint == "users_tenant_email_key":
            raise EmailTakenError from None
        raise
    return user


def _change_user(
    store: EventStore,
    tenant_id: str,
    user_id: UUID,
    decide: Callable[[users.User], list[DomainEvent]],
) -> users.User:
    for attempt in range(_ATTEMPTS):
        user = users.replay(user_id, (r.event for r in store.load(user_id)))
        if user.tenant_id != tenant_id or user.erased:
            raise NotFoundError(f"user {user_id} does not exist")
        events = decide(user)
        if not events:
            return user
        changed = user
        for event in events:
            changed = users.evolve(changed, event, user_id)
        try:
            store.append(user_id, user.version, events, writes=[user_row(changed, events[-1].at)])
        except ConcurrencyError:
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        return changed
    raise AssertionError("unreachable")


def grant_role(cmd: GrantRole, *, store: EventStore) -> users.User:
    return _change_user(
        store,
        cmd.tenant_id,
        cmd.user_id,
        lambda user: users.grant_role(user, cmd.role, by=cmd.granted_by, at=_now()),
    )


async def revoke_role(
    cmd: RevokeRole, *, store: EventStore, revocations: Revocations
) -> users.User:
    """The user's current access tokens stop working at once."""
    user = await asyncio.to_thread(
        _change_user,
        store,
        cmd.tenant_id,
        cmd.user_id,
        lambda user: users.revoke_role(user, cmd.role, by=cmd.revoked_by, at=_now()),
    )
    await revocations.revoke_user(str(cmd.user_id))
    return user


class WrongPasswordError(InvalidValueError):
    def __init__(self) -> None:
        super().__init__("current_password", "is not the current password")


async def change_password(
    cmd: ChangePassword, *, store: EventStore, hasher: PasswordHasher, revocations: Revocations
) -> users.User:
    """Every token of the user stops working, so they log in again with the new password."""
    new_password = check_password(cmd.new_password)

    def decide(user: users.User) -> list[DomainEvent]:
        if not hasher.verify(cmd.current_password, user.password_hash):
            raise WrongPasswordError
        return users.change_password(user, hasher.hash(new_password), at=_now())

    user = await asyncio.to_thread(_change_user, store, cmd.tenant_id, cmd.user_id, decide)
    await revocations.revoke_user(str(cmd.user_id))
    return user


async def disable_user(
    cmd: DisableUser, *, store: EventStore, revocations: Revocations
) -> users.User:
    """The user's tokens stop working at once."""
    reason = cmd.reason.strip()
    if not 1 <= len(reason) <= 500:  # noqa: PLR2004
        raise InvalidValueError("reason", "must be 1 to 500 characters")
    user = await asyncio.to_thread(
        _change_user,
        store,
        cmd.tenant_id,
        cmd.user_id,
        lambda user: users.disable(user, by=cmd.disabled_by, reason=reason, at=_now()),
    )
    await revocations.revoke_user(str(cmd.user_id))
    return user


def issue_api_key(cmd: IssueApiKey, *, store: EventStore) -> tuple[keys.ApiKey, str]:
    """Record a new key; returns it with the full key string, which is never stored."""
    name = cmd.name.strip()
    if not 1 <= len(name) <= 100:  # noqa: PLR2004
        raise InvalidValueError("name", "must be 1 to 100 characters")
    secret = new_secret()
    event = keys.issue(
        tenant_id=check_tenant(cmd.tenant_id),
        name=name,
        role=cmd.role,
        secret_hash=hash_secret(secret),
        by=cmd.issued_by,
        at=_now(),
    )
    key_id = uuid4()
    key = keys.evolve(None, event, key_id)
    try:
        store.append(key_id, 0, [event], writes=[_key_row(key, cmd.issued_by, event.at)])
    except ConstraintViolationError as exc:
        if exc.constraint == "api_keys_tenant_name_key":
            raise KeyNameTakenError from None
        raise
    return key, format_api_key(key_id, secret)


def _revoke_api_key(cmd: RevokeApiKey, store: EventStore) -> keys.ApiKey:
    key = keys.replay(cmd.key_id, (r.event for r in store.load(cmd.key_id)))
    if key.tenant_id != cmd.tenant_id:
        raise NotFoundError(f"API key {cmd.key_id} does not exist")
    events = keys.revoke(key, by=cmd.revoked_by, at=_now())
    if not events:
        return key
    revoked = keys.evolve(key, events[0], key.id)
    store.append(key.id, key.version, events, writes=[_key_row(revoked, "", events[0].at)])
    return revoked


async def revoke_api_key(
    cmd: RevokeApiKey, *, store: EventStore, revocations: Revocations
) -> keys.ApiKey:
    """Every process refuses the key at once."""
    key = await asyncio.to_thread(_revoke_api_key, cmd, store)
    # Processes cache key records for CACHE_TTL_S; deny the key until caches expire.
    await revocations.revoke_token(f"key:{cmd.key_id}", int(time.time() + CACHE_TTL_S + 5))
    return key


HANDLERS: Handlers = {
    RegisterUser: register_user,
    GrantRole: grant_role,
    RevokeRole: revoke_role,
    ChangePassword: change_password,
    DisableUser: disable_user,
    IssueApiKey: issue_api_key,
    RevokeApiKey: revoke_api_key,
}
