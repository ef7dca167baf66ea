"""Route policies and the one guard that enforces them on every route.

Each route handler declares `policy=` (see `allow`, `PUBLIC`, `PROBE`, `WEBHOOK`); a route
without one is refused outright, and a test walks the route table so none can ship without it.
The guard authenticates the caller (JWT or API key, no database round trip), counts the
request against the caller's rate limits (one Redis round trip), then checks the roles.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    ServiceUnavailableException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Message, Scope
from redis.exceptions import RedisError

from domain.identity.roles import Role
from infrastructure.auth.api_keys import ApiKeyCache, looks_like_api_key
from infrastructure.auth.principal import Principal
from infrastructure.auth.revocation import Revocations
from infrastructure.auth.tokens import InvalidTokenError, TokenService
from infrastructure.eventstore import meta
from infrastructure.log import get_logger
from infrastructure.rate_limit import (
    Decision,
    RateLimiter,
    Tier,
    parse_tiers,
    rate_limit_headers,
)
from infrastructure.settings import Settings

log = get_logger(__name__)

POLICY = "policy"
_PRINCIPAL = "herald.principal"
_LIMIT = "herald.rate_limit"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="herald"'}
UNAVAILABLE_LOG_S = 10.0  # while the limiter is unavailable, one warning per this many seconds


class Policy(msgspec.Struct, frozen=True):
    """Who may call a route. `roles=None` admits anyone, with or without credentials."""

    roles: frozenset[Role] | None
    rate_limited: bool = True
    # False: the route reads no credentials at all and is limited per client IP on the
    # webhook tier; the handler authenticates the request itself (a provider's signature).
    credentials: bool = True


PUBLIC = Policy(roles=None)
PROBE = Policy(roles=None, rate_limited=False)  # health probes: never limited, never authed
WEBHOOK = Policy(roles=None, credentials=False)  # provider callbacks: signed, no JWT


def allow(*roles: Role) -> Policy:
    return Policy(roles=frozenset(roles))


ANY_ROLE = allow(*Role)


class AccessGate:
    def __init__(
        self,
        settings: Settings,
        tokens: TokenService,
        revocations: Revocations,
        api_keys: ApiKeyCache,
        limiter: RateLimiter,
    ) -> None:
        self.tokens = tokens
        self.revocations = revocations
        self.api_keys = api_keys
        self.limiter = limiter
        self.enabled = settings.rate_limit_enabled
        self.fail_open = settings.rate_limit_fail_open
        self._let_through = 0  # requests let through since the last warning
        self._quiet_until = 0.0
        self.anonymous = parse_tiers(settings.rate_limit_anonymous)
        self.authenticated = parse_tiers(settings.rate_limit_authenticated)
        self.login = parse_tiers(settings.rate_limit_login)
        self.webhooks = parse_tiers(settings.rate_limit_webhooks)
        self.default_tenant = settings.default_tenant  # for a login that names no tenant

    async def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller, None when no credentials were sent; 401 when they do not hold."""
        if authorization is None:
            return None
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            raise NotAuthorizedException("use an Authorization: Bearer header", headers=CHALLENGE)
        if looks_like_api_key(credentials):
            return await self._api_key(credentials.strip())
        try:
            principal = self.tokens.principal(credentials.strip())
        except InvalidTokenError as exc:
            log.info("token refused", reason=str(exc))
            raise _invalid() from None
        if self.revocations.is_revoked(principal.token_id, principal.subject, principal.issued_at):
            log.info("token refused", reason="revoked")
            raise _invalid()
        return principal

    async def _api_key(self, presented: str) -> Principal:
        record = await self.api_keys.verify(presented)
        if record is None:
            raise _invalid()
        token_id = f"key:{record.key_id}"
        if self.revocations.is_revoked(token_id, str(record.key_id), None):
            raise _invalid()
        return Principal(
            subject=str(record.key_id),
            tenant_id=record.tenant_id,
            roles=frozenset({record.role}),
            kind="api_key",
            token_id=token_id,
        )

    async def limit(self, key: str, tiers: tuple[Tier, ...]) -> Decision | None:
        """Count one request against `tiers`; raises 429 when over. None when not limited."""
        if not self.enabled:
            return None
        try:
            decision = await self.limiter.hit(key, tiers)
        except (RedisError, OSError) as exc:
            if self.fail_open:
                self._let_through += 1
                now = time.monotonic()
                if now >= self._quiet_until:  # one line per interval, not one per request
                    log.warning(
                        "rate limiter unavailable; letting requests through",
                        error=str(exc),
                        requests=self._let_through,
                    )
                    self._let_through, self._quiet_until = 0, now + UNAVAILABLE_LOG_S
                return None
            raise ServiceUnavailableException(
                "rate limiting is unavailable", headers={"Retry-After": "1"}
            ) from None
        if not decision.allowed:
            raise TooManyRequestsException(
                "too many requests; see Retry-After", headers=rate_limit_headers(decision)
            )
        return decision


def _invalid() -> NotAuthorizedException:
    return NotAuthorizedException(
        "missing or invalid credentials",
        headers={"WWW-Authenticate": 'Bearer realm="herald", error="invalid_token"'},
    )


def client_ip(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    client = connection.scope.get("client")
    return client[0] if client else "unknown"


async def authorize(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The app-wide guard: authenticate, rate limit, then check the route's policy."""
    policy = handler.opt.get(POLICY)
    if policy is None and set(getattr(handler, "http_methods", ())) == {"OPTIONS"}:
        return  # litestar's automatic OPTIONS answers: they only list the allowed methods
    if not isinstance(policy, Policy):
        # Fail closed: a route nobody gave a policy to is reachable by nobody.
        raise PermissionDeniedException("this route has no access policy")
    if policy == PROBE:
        return
    gate: AccessGate = connection.app.state.gate
    if not policy.credentials:
        await _limit_uncredentialed(connection, gate, policy)
        return
    try:
        principal = await gate.authenticate(connection.headers.get("authorization"))
    except NotAuthorizedException:
        if policy.rate_limited:
            await gate.limit(f"ip:{client_ip(connection)}", gate.anonymous)
        raise
    if policy.rate_limited:
        if principal is None:
            decision = await gate.limit(f"ip:{client_ip(connection)}", gate.anonymous)
        else:
            decision = await gate.limit(f"principal:{principal.subject}", gate.authenticated)
        connection.scope["state"][_LIMIT] = decision
    if policy.roles is not None:
        if principal is None:
            raise NotAuthorizedException("credentials are required", headers=CHALLENGE)
        if not principal.has_any(policy.roles):
            raise PermissionDeniedException("your role does not allow this")
    _admit(connection, principal)


def _admit(connection: ASGIConnection[Any, Any, Any, Any], principal: Principal | None) -> None:
    connection.scope["state"][_PRINCIPAL] = principal
    if principal is not None:
        # Whatever this request records is stored as done by this principal.
        roles = tuple(sorted(principal.roles))
        meta.set_actor(principal.subject, principal.kind, roles, principal.tenant_id)


async def _limit_uncredentialed(
    connection: ASGIConnection[Any, Any, Any, Any], gate: AccessGate, policy: Policy
) -> None:
    """Webhooks: their handlers check the provider's signature; the guard counts the client IP."""
    if policy.rate_limited:
        key = f"webhook-ip:{client_ip(connection)}"
        connection.scope["state"][_LIMIT] = await gate.limit(key, gate.webhooks)


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The authenticated caller of a route whose policy requires roles."""
    principal = connection.scope["state"].get(_PRINCIPAL)
    if not isinstance(principal, Principal):
        raise NotAuthorizedException("credentials are required", headers=CHALLENGE)
    return principal


def provide_gate(request: Request[Any, Any, Any]) -> AccessGate:
    """The `gate` dependency: for routes that count requests against limits of their own."""
    gate: AccessGate = request.app.state.gate
    return gate


async def add_rate_limit_headers(message: Message, scope: Scope) -> None:
    if message["type"] == "http.response.start":
        decision = scope.get("state", {}).get(_LIMIT)
        if isinstance(decision, Decision):
            MutableScopeHeaders.from_message(message).update(rate_limit_headers(decision))
