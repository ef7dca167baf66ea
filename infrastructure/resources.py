"""Connections a role holds for its lifetime: PostgreSQL pool, Redis client, Kafka admin client.

Opened in an application's lifespan, never at import. Opening does not wait for the servers:
a role starts even while a dependency is down, and /health says which one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient
from psycopg_pool import AsyncConnectionPool

from infrastructure.kafka import admin_client
from infrastructure.settings import Settings


class MissingServerError(Exception):
    """A role was asked to run without a server URL it needs."""


@dataclass(frozen=True)
class Resources:
    settings: Settings
    db: AsyncConnectionPool
    redis: aioredis.Redis
    kafka_admin: AdminClient


def require_servers(settings: Settings) -> tuple[str, str, str]:
    """The three server URLs, or `MissingServerError` naming the first unset variable."""
    if settings.database_url is None:
        raise MissingServerError("HERALD_DATABASE_URL")
    if settings.redis_url is None:
        raise MissingServerError("HERALD_REDIS_URL")
    if settings.kafka_bootstrap is None:
        raise MissingServerError("HERALD_KAFKA_BOOTSTRAP")
    return settings.database_url.reveal(), settings.redis_url.reveal(), settings.kafka_bootstrap


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    database_url, redis_url, bootstrap = require_servers(settings)
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
    try:
        yield Resources(settings, pool, client, admin_client(bootstrap))
    finally:
        await client.aclose()
        await pool.close()
