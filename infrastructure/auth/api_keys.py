"""API keys as presented by service clients: `hk_<key id>_<secret>`.

The secret is 256 random bits, so a plain SHA-256 of it is as safe to store as a slow
password hash and costs microseconds to check. Each process caches key records for a
minute; a revocation reaches every process at once through the revocation feed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from uuid import UUID

import msgspec
from psycopg_pool import AsyncConnectionPool

from domain.identity.roles import Role

_FORMAT = re.compile(r"^hk_(?P<key_id>[0-9a-f]{32})_(?P<secret>[A-Za-z0-9_-]{43})$")
CACHE_TTL_S = 60.0


class KeyRecord(msgspec.Struct, frozen=True):
    key_id: UUID
    tenant_id: str
    role: Role
    secret_hash: str
    active: bool


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def format_api_key(key_id: UUID, secret: str) -> str:
    return f"hk_{key_id.hex}_{secret}"


def parse_api_key(presented: str) -> tuple[UUID, str] | None:
    match = _FORMAT.match(presented)
    if match is None:
        return None
    return UUID(hex=match["key_id"]), match["secret"]


def looks_like_api_key(presented: str) -> bool:
    return presented.startswith("hk_")


class ApiKeyCache:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._records: dict[UUID, tuple[KeyRecord | None, float]] = {}

    async def verify(self, presented: str) -> KeyRecord | None:
        """The active key record `presented` names, if its secret matches; else None."""
        parsed = parse_api_key(presented)
        if parsed is None:
            return None
        key_id, secret = parsed
        record = await self._record(key_id)
        if record is None or not record.active:
            return None
        if not hmac.compare_digest(record.secret_hash, hash_secret(secret)):
            return None
        return record

    def forget(self, key_id: UUID) -> None:
        self._records.pop(key_id, None)

    async def _record(self, key_id: UUID) -> KeyRecord | None:
        cached = self._records.get(key_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT key_id, tenant_id, role, secret_hash, status = 'active' "
                "FROM api_keys WHERE key_id = %s",
                (key_id,),
            )
            row = await cursor.fetchone()
        record = KeyRecord(row[0], row[1], Role(row[2]), row[3], row[4]) if row else None
        self._records[key_id] = (record, time.monotonic() + CACHE_TTL_S)
        return record
