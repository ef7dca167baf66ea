"""Token endpoints: log in, exchange a refresh token, log out."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from domain.identity.roles import Role
from infrastructure.auth.guard import ANY_ROLE, PUBLIC, client_ip, current_principal
from infrastructure.auth.revocation import RefreshTokens
from infrastructure.auth.tokens import InvalidTokenError
from infrastructure.log import get_logger
from infrastructure.resources import Resources

log = get_logger(__name__)


class LoginRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tenant: str
    email: str
    password: str


class RefreshRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_token: str


class TokenPair(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret


class _Account(msgspec.Struct, frozen=True):
    user_id: UUID
    tenant_id: str
    password_hash: str | None
    roles: list[str]
    active: bool


_ACCOUNT_COLUMNS = "user_id, tenant_id, password_hash, roles, status = 'active'"


async def _account(resources: Resources, where: str, params: tuple[Any, ...]) -> _Account | None:
    async with resources.db.connection() as conn:
        # `where` is one of two constant clauses in this module; values go as parameters.
        sql = f"SELECT {_ACCOUNT_COLUMNS} FROM users WHERE {where}"  # noqa: S608
        cursor = await conn.execute(sql, params)
        row = await cursor.fetchone()
    return _Account(*row) if row else None


def _refused() -> NotAuthorizedException:
    return NotAuthorizedException("invalid email or password")


async def _issue_pair(resources: Resources, account: _Account, family: str) -> TokenPair:
    tokens = resources.tokens
    subject = str(account.user_id)
    roles = frozenset(Role(r) for r in account.roles)
    access = tokens.issue(
        "access", subject=subject, tenant_id=account.tenant_id, family=family, roles=roles
    )
    refresh = tokens.issue("refresh", subject=subject, tenant_id=account.tenant_id, family=family)
    await resources.refresh_tokens.remember(family, refresh.jti, subject, tokens.refresh_ttl_s)
    return TokenPair(
        access_token=access.token,
        refresh_token=refresh.token,
        expires_in=resources.settings.access_token_ttl_s,
    )


class TokenController(Controller):
    path = "/auth"
    tags = ["auth"]  # noqa: RUF012

    @post(
        "/login",
        policy=PUBLIC,
        status_code=HTTP_200_OK,
        operation_id="login",
        summary="Exchange an email and password for an access token and a refresh token.",
    )
    async def login(
        self,
        data: JSONBody[LoginRequest],
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
    ) -> TokenPair:
        gate = resources.gate
        email = data.email.strip().lower()
        await gate.limit(f"login:ip:{client_ip(request)}", gate.login)
        await gate.limit(f"login:account:{data.tenant}:{email}", gate.login)
        account = await _account(resources, "tenant_id = %s AND email = %s", (data.tenant, email))
        valid = await asyncio.to_thread(
            resources.hasher.verify, data.password, account.password_hash if account else None
        )
        if account is None or not valid or not account.active:
            raise _refused()
        return await _issue_pair(resources, account, family=secrets.token_urlsafe(16))

    @post(
        "/refresh",
        policy=PUBLIC,
        status_code=HTTP_200_OK,
        operation_id="refreshTokens",
        summary="Exchange a refresh token for a new pair; each refresh token works once.",
    )
    async def refresh(
        self, data: JSONBody[RefreshRequest], resources: NamedDependency[Resources]
    ) -> TokenPair:
        try:
            claims = resources.tokens.decode(data.refresh_token, "refresh")
        except InvalidTokenError as exc:
            log.info("refresh refused", reason=str(exc))
            raise NotAuthorizedException("invalid refresh token") from None
        outcome = await resources.refresh_tokens.rotate(claims["fam"], claims["jti"])
        if outcome == RefreshTokens.REUSED:
            log.warning("refresh token reused; its family is revoked", user=claims["sub"])
        if outcome != RefreshTokens.ROTATED:
            raise NotAuthorizedException("invalid refresh token")
        account = await _account(
            resources, "user_id = %s AND tenant_id = %s", (UUID(claims["sub"]), claims["tid"])
        )
        if account is None or not account.active:
            await resources.refresh_tokens.revoke_family(claims["fam"])
            raise NotAuthorizedException("invalid refresh token")
        return await _issue_pair(resources, account, family=claims["fam"])

    @post(
        "/logout",
        policy=ANY_ROLE,
        status_code=HTTP_204_NO_CONTENT,
        operation_id="logout",
        summary="Revoke the access token used and every refresh token of its login.",
    )
    async def logout(
        self, request: Request[Any, Any, Any], resources: NamedDependency[Resources]
    ) -> None:
        principal = current_principal(request)
        if principal.kind != "user" or principal.token_id is None:
            return  # API keys are revoked by an admin, not logged out
        await resources.revocations.revoke_token(principal.token_id, principal.expires_at or 0)
        if principal.family is not None:
            await resources.refresh_tokens.revoke_family(principal.family)
