"""JWT access and refresh tokens (pyjwt): HS256 only, every registered claim checked, keys
chosen by `kid` so a signing key can be rotated without logging everyone out."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any, Literal

import jwt
import msgspec

from domain.identity.roles import Role
from infrastructure.auth.principal import Principal
from infrastructure.settings import Settings

ALGORITHMS = ["HS256"]  # the allow-list: anything else, "none" included, is refused
_REQUIRED = ["iss", "aud", "exp", "iat", "nbf", "jti", "sub"]
LEEWAY_S = 5
VERIFIED_CACHE_SIZE = 10_000

TokenKind = Literal["access", "refresh"]


class InvalidTokenError(Exception):
    """The token is missing, malformed, forged, expired, not yet valid or revoked.

    The message is for logs; clients only ever learn that their credentials were refused.
    """


class IssuedToken(msgspec.Struct, frozen=True):
    token: str
    jti: str
    expires_at: int


def key_id(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


class TokenService:
    def __init__(self, settings: Settings) -> None:
        if settings.jwt_secret is None:
            raise ValueError("HERALD_JWT_SECRET is required to issue tokens")
        current = settings.jwt_secret.reveal()
        previous = settings.jwt_previous_secrets.reveal() if settings.jwt_previous_secrets else ""
        self._kid = key_id(current)
        self._keys = {
            key_id(s.strip()): s.strip().encode() for s in previous.split(",") if s.strip()
        }
        self._keys[self._kid] = current.encode()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._access_ttl = settings.access_token_ttl_s
        self._refresh_ttl = settings.refresh_token_ttl_s
        self._verified: dict[str, Principal] = {}

    @property
    def access_ttl_s(self) -> int:
        return self._access_ttl

    @property
    def refresh_ttl_s(self) -> int:
        return self._refresh_ttl

    def issue(
        self,
        kind: TokenKind,
        *,
        subject: str,
        tenant_id: str,
        family: str,
        roles: frozenset[Role] = frozenset(),
    ) -> IssuedToken:
        issued = time.time()
        now = int(issued)
        ttl = self._access_ttl if kind == "access" else self._refresh_ttl
        jti = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            # Milliseconds, so that revoking a user's tokens "up to now" spares a token
            # issued a moment later in the same second (a fresh login after a revocation).
            "iat": round(issued, 3),
            "nbf": now,
            "exp": now + ttl,
            "jti": jti,
            "typ": kind,
            "tid": tenant_id,
            "fam": family,
        }
        if kind == "access":
            claims["roles"] = sorted(roles)
        token = jwt.encode(
            claims, self._keys[self._kid], algorithm="HS256", headers={"kid": self._kid}
        )
        return IssuedToken(token, jti, now + ttl)

    def decode(self, token: str, kind: TokenKind) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise InvalidTokenError("unknown signing key")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": _REQUIRED},
            )
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(type(exc).__name__) from None
        if claims.get("typ") != kind:
            raise InvalidTokenError(f"not an {kind} token")
        if not isinstance(claims.get("tid"), str) or not isinstance(claims.get("fam"), str):
            raise InvalidTokenError("tenant or family claim missing")
        return claims

    def principal(self, token: str) -> Principal:
        """Verify an access token; no I/O. Revocation is checked by the caller.

        A client sends the same token with every request for its whole life, so each
        verified token is remembered, keyed by its full text (signature included), until
        it expires: repeat requests skip the signature and claim checks.
        """
        cached = self._verified.get(token)
        if cached is not None and cached.expires_at is not None:
            if cached.expires_at + LEEWAY_S > time.time():
                return cached
            del self._verified[token]
        principal = self._verify_access(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = principal
        return principal

    def _verify_access(self, token: str) -> Principal:
        claims = self.decode(token, "access")
        try:
            roles = frozenset(Role(r) for r in claims.get("roles", []))
        except ValueError:
            raise InvalidTokenError("unknown role") from None
        return Principal(
            subject=str(claims["sub"]),
            tenant_id=claims["tid"],
            roles=roles,
            kind="user",
            token_id=str(claims["jti"]),
            family=claims["fam"],
            issued_at=float(claims["iat"]),
            expires_at=int(claims["exp"]),
        )
