"""What every read route stands on: the read models, and the caller's view of them.

`ReadModels` holds the stores the projections write. A route reading projected models
takes a `Reader`: the caller's tenant, after the read models have reached whatever position
the request asked for.

Read-your-writes: command responses carry the position of what they appended. A read
sending it as `min_position` (query parameter) or `Min-Position` (header) waits, up to
HERALD_READ_WAIT_MS, until the notifications projection has reflected everything up to it;
if it has not by then, the answer is 503 with `Retry-After`, never a stale read passed off
as fresh.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from litestar.di import NamedDependency
from litestar.exceptions import ServiceUnavailableException
from litestar.params import HeaderParameter, QueryParameter
from psycopg_pool import AsyncConnectionPool

from infrastructure.auth.principal import Principal
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION
from infrastructure.metrics import READ_WAITS
from infrastructure.redis_batch import StatusReader
from infrastructure.redis_keys import RedisKeys

POLL_S = 0.02

MinPosition = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        required=False,
        description="Wait until the read models reflect the log up to this position "
        "(the `position` a command returned).",
    ),
]
MinPositionHeader = Annotated[
    int | None,
    HeaderParameter(name="Min-Position", ge=0, required=False, description="Same as min_position."),
]


@dataclass(frozen=True)
class ReadModels:
    db: AsyncConnectionPool  # the SQL read models, and the event store for auditors
    redis: aioredis.Redis
    statuses: StatusReader  # batched reads of the status hashes
    keys: RedisKeys  # the read-model key names of this deployment's namespace
    codec: EventCodec  # to show stored events
    wait_ms: int  # how long a read waits for min_position


@dataclass(frozen=True)
class Reader:
    """One read: the caller's tenant and the read models, caught up as the request asked."""

    tenant: str
    models: ReadModels
    wanted: int  # the position the request asked for; 0 when none
    reached: int | None  # the projection's position seen while waiting; None: not read

    async def position(self) -> int:
        """The projection's position: every notification event up to it is reflected."""
        if self.reached is not None:
            return self.reached
        return await projection_position(self.models)


async def provide_reader(
    caller: NamedDependency[Principal],
    read_models: NamedDependency[ReadModels],
    min_position: MinPosition = None,
    min_position_header: MinPositionHeader = None,
) -> Reader:
    """The `reader` dependency: reads nothing when no position was asked for."""
    wanted = max((w for w in (min_position, min_position_header) if w is not None), default=None)
    reached = None if wanted is None else await _wait_for(read_models, wanted)
    return Reader(caller.tenant_id, read_models, wanted or 0, reached)


async def projection_position(models: ReadModels) -> int:
    async with models.db.connection() as conn:
        cursor = await conn.execute(
            "SELECT notification_id FROM tracking WHERE application_name = %s",
            (NOTIFICATIONS_PROJECTION,),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def _wait_for(models: ReadModels, target: int) -> int:
    reached = await projection_position(models)
    deadline = time.monotonic() + models.wait_ms / 1000
    waited = False
    while reached < target:
        if time.monotonic() >= deadline:
            READ_WAITS.labels("unavailable").inc()
            raise ServiceUnavailableException(
                f"the read models reflect the log up to position {reached}, not yet {target}",
                headers={"Retry-After": "1"},
            )
        waited = True
        await asyncio.sleep(POLL_S)
        reached = await projection_position(models)
    READ_WAITS.labels("waited" if waited else "ready").inc()
    return reached
