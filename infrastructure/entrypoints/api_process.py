"""What the api process holds for its lifetime, and the dependencies its routes ask for by name.

Connections (PostgreSQL pool and event store, the group-commit writer, Redis, the Kafka
admin client) and the services built on them open in the app's lifespan, never at import.
Opening does not wait for the servers: the api starts even while a dependency is down, and
/health says which one. Each area then gets a small dependency of its own: the message bus
for commands, `ReadModels` for queries, `Operations` for the admin views, `HealthChecks`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from commands.exports.handlers import HANDLERS as EXPORT_HANDLERS
from commands.identity.handlers import HANDLERS as IDENTITY_HANDLERS
from commands.identity.sessions import HANDLERS as SESSION_HANDLERS
from commands.jobs.handlers import HANDLERS as JOB_HANDLERS
from commands.notifications.handlers import HANDLERS as NOTIFICATION_HANDLERS
from commands.privacy.requests import HANDLERS as PRIVACY_HANDLERS
from commands.retention.policy import HANDLERS as RETENTION_HANDLERS
from commands.webhooks.handlers import HANDLERS as WEBHOOK_HANDLERS
from infrastructure.archives.files import ArchiveFiles
from infrastructure.auth.api_keys import ApiKeyCache
from infrastructure.auth.guard import AccessGate
from infrastructure.auth.passwords import PasswordHasher
from infrastructure.auth.revocation import RefreshTokens, Revocations
from infrastructure.auth.tokens import TokenService
from infrastructure.entrypoints.role_health import follower_health
from infrastructure.eventstore import catalog
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EventStore
from infrastructure.eventstore.writer import GroupCommitWriter
from infrastructure.kafka.offsets import OffsetReader
from infrastructure.kafka.topics import (
    PROJECTOR_GROUP,
    admin_client,
    consumer_group,
    notifications_topic,
)
from infrastructure.messagebus import MessageBus
from infrastructure.providers.status import ProviderStatus
from infrastructure.rate_limit import RateLimiter
from infrastructure.redis_batch import StatusReader
from infrastructure.redis_keys import RedisKeys
from infrastructure.settings import Settings, require_servers, require_signing_key
from infrastructure.web.commands import BUS
from infrastructure.web.health import HealthChecks, kafka_probe, postgres_probe, redis_probe
from infrastructure.web.resources import ResourceGauges
from projections.exports.exporter import open_export
from read_api.admin.http import Operations
from read_api.viewing import READ_MODELS, ReadModels

COMMAND_HANDLERS = {
    **IDENTITY_HANDLERS,
    **SESSION_HANDLERS,
    **NOTIFICATION_HANDLERS,
    **WEBHOOK_HANDLERS,
    **JOB_HANDLERS,
    **EXPORT_HANDLERS,
    **RETENTION_HANDLERS,
    **PRIVACY_HANDLERS,
}


@dataclass(frozen=True)
class ApiProcess:
    gate: AccessGate  # the guard's: authentication and rate limits
    revocations: Revocations  # the denylist mirror, synced before the api serves
    dependencies: dict[str, Any]  # kept on the app state, by name, for the providers


@asynccontextmanager
async def open_api_process(
    settings: Settings, codec: EventCodec | None = None
) -> AsyncIterator[ApiProcess]:
    """Everything an api worker holds open; `codec` replaces the sealing codec the roles use
    (a benchmark's baseline without sealing is the one caller that passes it)."""
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
    codec = codec or catalog.codec_for(settings)
    # Identity commands are rare next to notifications, which go through the writer.
    store = EventStore(database_url, codec, pool_size=2)
    writer = GroupCommitWriter(database_url, codec)
    await writer.start()
    tokens = TokenService(settings)
    revocations = Revocations(client, settings.access_token_ttl_s)
    gate = AccessGate(settings, tokens, revocations, ApiKeyCache(pool), RateLimiter(client))
    await revocations.start()
    providers = ProviderStatus(client, settings)
    bus = MessageBus(
        COMMAND_HANDLERS,
        store=store,
        writer=writer,
        pool=pool,
        codec=codec,
        hasher=PasswordHasher(settings.bcrypt_rounds),
        tokens=tokens,
        revocations=revocations,
        refresh_tokens=RefreshTokens(client),
        schedules=settings.schedules,
        exporter=partial(
            open_export, database_url, codec, archives=ArchiveFiles(settings.archive_path)
        ),
        default_retention=settings.default_retention,
    )
    read_models = ReadModels(
        db=pool,
        redis=client,
        statuses=StatusReader(client),
        keys=RedisKeys(settings.namespace),
        codec=codec,
        wait_ms=settings.read_wait_ms,
    )
    health = HealthChecks(
        probes={
            "postgres": postgres_probe(pool),
            "redis": redis_probe(client),
            "kafka": kafka_probe(admin_client(bootstrap), timeout_s),
        },
        timeout_s=timeout_s,
        provider_modes=providers.modes,
        provider_circuits=providers.circuits,
        followers=partial(follower_health, database_url),
    )
    offsets = (
        OffsetReader(
            bootstrap,
            notifications_topic(settings.namespace),
            consumer_group(settings.namespace, PROJECTOR_GROUP),
        )
        if bootstrap
        else None
    )
    operations = Operations(
        namespace=settings.namespace,
        offsets=offsets,
        provider_states=providers.states,
        schedules=settings.schedules,
        retention_defaults=settings.default_retention,
    )
    gauges = ResourceGauges(pool, client, timeout_s)
    await gauges.start()
    try:
        yield ApiProcess(
            gate=gate,
            revocations=revocations,
            dependencies={
                BUS: bus,
                READ_MODELS: read_models,
                "operations": operations,
                "health": health,
            },
        )
    finally:
        if offsets is not None:
            await asyncio.to_thread(offsets.close)
        await gauges.stop()
        await revocations.stop()
        await writer.stop()
        await asyncio.to_thread(store.close)
        await client.aclose()
        await pool.close()
