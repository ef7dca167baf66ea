"""What every read route stands on: the read models, and the caller's view of them.

`ReadModels` holds the stores the projections write. A route takes a `Viewer` (the caller
and the read models) or, when it reads projected models, a `Reader`: a viewer after the
read models have reached whatever position the request asked for.

Read-your-writes: command responses carry the position of what they appended. A read
sending it as `min_position` (query parameter) or `Min-Position` (header) waits, up to
HERALD_READ_WAIT_MS, until the notifications projection has reflected everything up to it;
if it has not by then, the answer is 503 with `Retry-After`, never a stale read passed off
as fresh; a position the log has not reached at all is the client's mistake, a 422.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Annotated, Any

import redis.asyncio as aioredis
import redis.exceptions
from litestar import Request
from litestar.exceptions import ServiceUnavailableException, ValidationException
from litestar.params import HeaderParameter, QueryParameter
from psycopg_pool import AsyncConnectionPool

from domain.errors import InvalidValueError
from domain.identity.roles import normalise_email
from infrastructure.auth.guard import current_principal
from infrastructure.auth.principal import Principal
from infrastructure.eventstore.catalog import NOTIFICATION_EVENT_NAMES
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION
from infrastructure.metrics import READ_WAITS
from infrastructure.redis_batch import StatusReader
from infrastructure.redis_keys import RedisKeys
from infrastructure.web.contract import MAX_POSITION

POLL_S = 0.02
# Redis out of reach or restarting: every read that starts in Redis answers from PostgreSQL
# instead, and skips caching what it read.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

MinPosition = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=MAX_POSITION,
        required=False,
        description="Wait until the read models reflect the log up to this position "
        "(the `position` a command returned).",
    ),
]
MinPositionHeader = Annotated[
    int | None,
    HeaderParameter(
        name="Min-Position",
        ge=0,
        le=MAX_POSITION,
        required=False,
        description="Same as min_position.",
    ),
]


READ_MODELS = "read_models"  # where the app's state keeps them


@dataclass(frozen=True)
class ReadModels:
    db: AsyncConnectionPool  # the SQL read models, and the event store for auditors
    redis: aioredis.Redis
    statuses: StatusReader  # batched reads of the status hashes
    keys: RedisKeys  # the read-model key names of this deployment's namespace
    codec: EventCodec  # to show stored events
    wait_ms: int  # how long a read waits for min_position

    async def recipient_key(self, tenant: str, address: str) -> str:
        """What the read models file a recipient under: the hex of its keyed hash. The
        address is normalised as commands normalise it (emails lower-cased)."""
        if "@" in address:
            # One that does not normalise is no address a notification could have: it
            # simply matches nothing.
            with contextlib.suppress(InvalidValueError):
                address = normalise_email(address)
        # The tenant's hashing key may need a round trip to PostgreSQL the first time.
        digest = await asyncio.to_thread(self.codec.recipient_hash, tenant, address)
        return digest.hex()


@dataclass(frozen=True)
class Viewer:
    """The `viewer` dependency: who reads, within their tenant, and the read models."""

    caller: Principal
    models: ReadModels

    @property
    def tenant(self) -> str:
        return self.caller.tenant_id


@dataclass(frozen=True)
class Reader(Viewer):
    """The `reader` dependency: a viewer whose read models have reached the position the
    request asked for (`min_position` or `Min-Position`)."""

    wanted: int  # the position the request asked for; 0 when none
    reached: int | None  # the projection's position seen while waiting; None: not read

    async def position(self) -> int:
        """The projection's position: every notification event up to it is reflected."""
        if self.reached is not None:
            return self.reached
        return await projection_position(self.models)


# The providers read the app's state and the guard's principal themselves rather than
# depend on other dependencies: litestar resolves several dependencies of one level in a
# task group, which costs more than the rest of a small read does.


def provide_viewer(request: Request[Any, Any, Any]) -> Viewer:
    models: ReadModels = request.app.state[READ_MODELS]
    return Viewer(current_principal(request), models)


async def provide_reader(
    request: Request[Any, Any, Any],
    min_position: MinPosition = None,
    min_position_header: MinPositionHeader = None,
) -> Reader:
    """Reads nothing when no position was asked for."""
    models: ReadModels = request.app.state[READ_MODELS]
    wanted = max((w for w in (min_position, min_position_header) if w is not None), default=None)
    reached = None if wanted is None else await _wait_for(models, wanted)
    return Reader(current_principal(request), models, wanted or 0, reached)


async def projection_position(models: ReadModels) -> int:
    async with models.db.connection() as conn:
        cursor = await conn.execute(
            "SELECT notification_id FROM tracking WHERE application_name = %s",
            (NOTIFICATIONS_PROJECTION,),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def log_head(models: ReadModels) -> int:
    """The newest position in the event store."""
    async with models.db.connection() as conn:
        cursor = await conn.execute(_HEAD)
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


_HEAD = f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}"  # noqa: S608
# The newest notification event in (after, target]: the projection sees no other kind, so
# the read models reflect the log up to `target` once they have reached that one.
_NEEDED = (
    f"SELECT max(notification_id) FROM {EVENTS_TABLE}"  # noqa: S608
    " WHERE notification_id > %s AND notification_id <= %s"
    " AND split_part(topic, '@', 1) = ANY(%s)"
)


async def _needed(models: ReadModels, reached: int, target: int) -> int:
    """The projection position that reflects the log up to `target`; 422 past the log's end,
    a position no command returned, which no wait would reach."""
    async with models.db.connection() as conn:
        head = await (await conn.execute(_HEAD)).fetchone()
        if target > (int(head[0]) if head else 0):
            raise ValidationException(
                "min_position beyond the log",
                extra=[{"key": "min_position", "message": "is past the end of the event log"}],
            )
        names = list(NOTIFICATION_EVENT_NAMES)
        row = await (await conn.execute(_NEEDED, (reached, target, names))).fetchone()
    return int(row[0]) if row and row[0] is not None else reached


async def _wait_for(models: ReadModels, target: int) -> int:
    reached = await projection_position(models)
    needed = reached if reached >= target else await _needed(models, reached, target)
    deadline = time.monotonic() + models.wait_ms / 1000
    waited = False
    while reached < needed:
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
