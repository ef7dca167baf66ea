"""Sessions: log in, exchange a refresh token for a new pair, log out.

A login gets a short-lived access token and a refresh token; each refresh token works once,
and the pair it is exchanged for belongs to the same family, so reusing a spent refresh
token (a sign it was stolen) revokes the whole family. Logging out revokes the access token
used and every refresh token of its family.

Every login, successful or not, every refresh and every logout is an event in a stream of
its own (`domain/identity/session.py`), stored with who and from where, for the audit trail.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from domain.events import DomainEvent
from domain.identity.roles import Role
from domain.identity.session import (
    LoggedOut,
    LoginFailed,
    LoginRefusal,
    LoginSucceeded,
    TokensRefreshed,
)
from infrastructure.auth.passwords import PasswordHasher
from infrastructure.auth.principal import CredentialsRefusedError, Principal
from infrastructure.auth.revocation import RefreshTokens, Revocations
from infrastructure.auth.tokens import InvalidTokenError, TokenService
from infrastructure.eventstore import meta
from infrastructure.eventstore.writer import GroupCommitWriter, StreamAppend
from infrastructure.log import get_logger
from infrastructure.messagebus import Command, Handlers

log = get_logger(__name__)


class TokenPair(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret


class LogIn(Command[TokenPair], frozen=True, kw_only=True):
    tenant_id: str
    email: str  # as given; compared normalised
    password: str


class Refresh(Command[TokenPair], frozen=True, kw_only=True):
    refresh_token: str


class LogOut(Command[None], frozen=True, kw_only=True):
    caller: Principal  # whoever presented the access token to revoke


class _Account(msgspec.Struct, frozen=True):
    user_id: UUID
    tenant_id: str
    email: str
    password_hash: str | None
    roles: list[str]
    active: bool


_ACCOUNT_COLUMNS = "user_id, tenant_id, email, password_hash, roles, status = 'active'"


async def _record(writer: GroupCommitWriter, event: DomainEvent) -> None:
    await writer.append([StreamAppend(uuid7(), 0, [event])])


def _acting(account: _Account) -> None:
    """The account authenticated by other means than the guard's: it acts from now on."""
    meta.set_actor(str(account.user_id), "user", tuple(sorted(account.roles)), account.tenant_id)


async def _account(
    pool: AsyncConnectionPool, where: str, params: tuple[Any, ...]
) -> _Account | None:
    async with pool.connection() as conn:
        # `where` is one of two constant clauses in this module; values go as parameters.
        sql = f"SELECT {_ACCOUNT_COLUMNS} FROM users WHERE {where}"  # noqa: S608
        cursor = await conn.execute(sql, params)
        row = await cursor.fetchone()
    return _Account(*row) if row else None


async def _issue_pair(
    account: _Account, family: str, tokens: TokenService, refresh_tokens: RefreshTokens
) -> TokenPair:
    subject = str(account.user_id)
    roles = frozenset(Role(r) for r in account.roles)
    access = tokens.issue(
        "access", subject=subject, tenant_id=account.tenant_id, family=family, roles=roles
    )
    refresh = tokens.issue("refresh", subject=subject, tenant_id=account.tenant_id, family=family)
    await refresh_tokens.remember(family, refresh.jti, subject, tokens.refresh_ttl_s)
    return TokenPair(
        access_token=access.token, refresh_token=refresh.token, expires_in=tokens.access_ttl_s
    )


async def log_in(
    cmd: LogIn,
    *,
    pool: AsyncConnectionPool,
    hasher: PasswordHasher,
    tokens: TokenService,
    refresh_tokens: RefreshTokens,
    writer: GroupCommitWriter,
) -> TokenPair:
    """A new pair for a valid email and password; the same refusal whatever was wrong."""
    email = cmd.email.strip().lower()
    account = await _account(pool, "tenant_id = %s AND email = %s", (cmd.tenant_id, email))
    # Verified even for an unknown account, so that the answer takes as long either way.
    valid = await asyncio.to_thread(
        hasher.verify, cmd.password, account.password_hash if account else None
    )
    now = datetime.now(UTC)
    if account is None or not valid or not account.active:
        reason = (
            LoginRefusal.UNKNOWN_ACCOUNT
            if account is None
            else LoginRefusal.WRONG_PASSWORD
            if not valid
            else LoginRefusal.DISABLED
        )
        user_id = account.user_id if account else None
        failed = LoginFailed(
            at=now, tenant_id=cmd.tenant_id, email=email, reason=reason, user_id=user_id
        )
        await _record(writer, failed)
        raise CredentialsRefusedError("invalid email or password")
    _acting(account)
    await _record(
        writer,
        LoginSucceeded(at=now, tenant_id=account.tenant_id, user_id=account.user_id, email=email),
    )
    return await _issue_pair(account, secrets.token_urlsafe(16), tokens, refresh_tokens)


async def refresh(
    cmd: Refresh,
    *,
    pool: AsyncConnectionPool,
    tokens: TokenService,
    refresh_tokens: RefreshTokens,
    writer: GroupCommitWriter,
) -> TokenPair:
    try:
        claims = tokens.decode(cmd.refresh_token, "refresh")
    except InvalidTokenError as exc:
        log.info("refresh refused", reason=str(exc))
        raise CredentialsRefusedError("invalid refresh token") from None
    outcome = await refresh_tokens.rotate(claims["fam"], claims["jti"])
    if outcome == RefreshTokens.REUSED:
        log.warning("refresh token reused; its family is revoked", user=claims["sub"])
    if outcome != RefreshTokens.ROTATED:
        raise CredentialsRefusedError("invalid refresh token")
    account = await _account(
        pool, "user_id = %s AND tenant_id = %s", (UUID(claims["sub"]), claims["tid"])
    )
    if account is None or not account.active:
        await refresh_tokens.revoke_family(claims["fam"])
        raise CredentialsRefusedError("invalid refresh token")
    _acting(account)
    refreshed = TokensRefreshed(
        at=datetime.now(UTC), tenant_id=account.tenant_id, user_id=account.user_id
    )
    await _record(writer, refreshed)
    return await _issue_pair(account, claims["fam"], tokens, refresh_tokens)


async def log_out(
    cmd: LogOut,
    *,
    revocations: Revocations,
    refresh_tokens: RefreshTokens,
    writer: GroupCommitWriter,
) -> None:
    caller = cmd.caller
    if caller.kind != "user" or caller.token_id is None:
        return  # API keys are revoked by an admin, not logged out
    await revocations.revoke_token(caller.token_id, caller.expires_at or 0)
    if caller.family is not None:
        await refresh_tokens.revoke_family(caller.family)
    logged_out = LoggedOut(
        at=datetime.now(UTC), tenant_id=caller.tenant_id, user_id=UUID(caller.subject)
    )
    await _record(writer, logged_out)


HANDLERS: Handlers = {LogIn: log_in, Refresh: refresh, LogOut: log_out}
