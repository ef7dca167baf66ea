"""Idempotency-Key support: the stored first answer to a key, and the request fingerprint."""

from __future__ import annotations

import hashlib

import msgspec
from psycopg_pool import AsyncConnectionPool

MAX_KEY_LENGTH = 200


class StoredResponse(msgspec.Struct, frozen=True):
    request_hash: bytes
    status_code: int
    body: bytes


def fingerprint(method: str, path: str, canonical_body: bytes) -> bytes:
    """What makes two requests "the same": method, path and the decoded body, re-encoded."""
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), canonical_body])).digest()


async def recall(pool: AsyncConnectionPool, tenant_id: str, key: str) -> StoredResponse | None:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT request_hash, status_code, response FROM idempotency_keys"
            " WHERE tenant_id = %s AND key = %s",
            (tenant_id, key),
        )
        row = await cursor.fetchone()
    return StoredResponse(bytes(row[0]), row[1], bytes(row[2])) if row else None
