"""Who is calling: a user with a token, or a service client with an API key."""

from __future__ import annotations

from typing import Literal

import msgspec

from domain.identity.roles import Role


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    subject: str  # user id or API key id
    tenant_id: str
    roles: frozenset[Role]
    kind: Literal["user", "api_key"]
    token_id: str | None = None  # the access token's jti
    family: str | None = None  # the refresh-token family the access token came from
    issued_at: float | None = None  # unix time the access token was issued, to the ms
    expires_at: int | None = None  # unix time the access token expires

    def has_any(self, roles: frozenset[Role]) -> bool:
        return not self.roles.isdisjoint(roles)


class CredentialsRefusedError(Exception):
    """The credentials presented do not hold (401); `str()` says so without saying why."""
