"""Connections and services a role holds for its lifetime: PostgreSQL pool and event store,
Redis client, Kafka admin client, and the authentication services built on them.

Opened in an application's lifespan, never at import. Opening does not wait for the servers:
a role starts even while a dependency is down, and /health says which one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient
from psycopg_pool import AsyncConnectionPool

from infrastructure.auth.api_keys import ApiKeyCache
from infrastructure.auth.guard import AccessGate
from infrastructure.auth.passwords import PasswordHasher
from infrastructure.auth.revocation import RefreshTokens, Revocations
from infrastructure.auth.tokens import TokenService
from infrastructure.eventstore import catalog
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EventStore
from infrastructure.eventstore.writer import GroupCommitWriter
from infrastructure.kafka import admin_client
from infrastructure.redis_batch import StatusReader
from infrastructure.redis_keys import RedisKeys
from infrastructure.settings import Settings, SettingsError
from infrastructure.web.rate_limit import RateLimiter


class MissingServerError(Exception):
    """A role was asked to run without a server URL it needs."""


@dataclass(frozen=True)
class Resources:
    settings: Settings
    db: AsyncConnectionPool
    redis: aioredis.Redis
    statuses: StatusReader  # batched reads for GET /notifications/{id}
    keys: RedisKeys  # the read-model key names of this deployment's namespace
    kafka_admin: AdminClient
    event_store: EventStore
    writer: GroupCommitWriter
    codec: EventCodec
    hasher: PasswordHasher
    tokens: TokenService
    revocations: Revocations
    refresh_tokens: RefreshTokens
    gate: AccessGate


def require_servers(settings: Settings) -> tuple[str, str, str]:
    """The three server URLs, or `MissingServerError` naming the first unset variable."""
    if settings.database_url is None:
        raise MissingServerError("HERALD_DATABASE_URL")
    if settings.redis_url is None:
        raise MissingServerError("HERALD_REDIS_URL")
    if settings.kafka_bootstrap is None:
        raise MissingServerError("HERALD_KAFKA_BOOTSTRAP")
    return settings.database_url.reveal(), settings.redis_url.reveal(), settings.kafka_bootstrap


def require_signing_key(settings: Settings) -> None:
    if settings.jwt_secret is None:
        raise SettingsError(
            "HERALD_JWT_SECRET",
            "is not set; the API cannot issue or check tokens without it",
            hint="generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'",
        )


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    database_url, redis_url, bootstrap = require_servers(settings)
    require_signing_key(settings)
    timeout_s = settings.health_timeout_ms / 1000
    pool = AsyncConnectionPool(
        database_url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        timeout=timeout_s * 5,
        open=False,
        name="herald",
    )
    await pool.open(wait=False)
    client = aioredis.Redis.from_url(
        redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s * 5
    )
    codec = catalog.codec()
    # Identity commands are rare next to notifications, which go through the writer.
    store = EventStore(database_url, codec, pool_size=2)
    writer = GroupCommitWriter(database_url, codec)
    await writer.start()
    tokens = TokenService(settings)
    revocations = Revocations(client, settings.access_token_ttl_s)
    gate = AccessGate(settings, tokens, revocations, ApiKeyCache(pool), RateLimiter(client))
    await revocations.start()
    try:
        yield Resources(
            settings=settings,
            db=pool,
            redis=client,
            statuses=StatusReader(client),
            keys=RedisKeys(settings.namespace),
            kafka_admin=admin_client(bootstrap),
            event_store=store,
            writer=writer,
            codec=codec,
            hasher=PasswordHasher(settings.bcrypt_rounds),
            tokens=tokens,
            revocations=revocations,
            refresh_tokens=RefreshTokens(client),
            gate=gate,
        )
    finally:
        await revocations.stop()
        await writer.stop()
        await asyncio.to_thread(store.close)
        await client.aclose()
        await pool.close()
