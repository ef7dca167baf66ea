"""Read-your-writes: a read may ask for the read models to have reached a log position first.

Command responses carry the position of what they appended. A read sending it as
`min_position` (query parameter) or `Min-Position` (header) waits, up to HERALD_READ_WAIT_MS,
until the notifications projection has reflected everything up to it; if it has not by then,
the answer is 503 with `Retry-After`, never a stale read passed off as fresh.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from litestar.exceptions import ServiceUnavailableException
from litestar.params import HeaderParameter, QueryParameter

from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION
from infrastructure.metrics import READ_WAITS
from infrastructure.resources import Resources

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


async def projection_position(resources: Resources) -> int:
    """Every notification event up to this position is reflected in the read models."""
    async with resources.db.connection() as conn:
        cursor = await conn.execute(
            "SELECT notification_id FROM tracking WHERE application_name = %s",
            (NOTIFICATIONS_PROJECTION,),
        )
        row = await cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def await_position(resources: Resources, *wanted: int | None) -> None:
    """Wait until the projection reaches the highest of `wanted`; reads nothing when none
    was asked for."""
    target = max((w for w in wanted if w is not None), default=None)
    if target is not None:
        await _wait_for(resources, target)


async def current_position(resources: Resources, *wanted: int | None) -> int:
    """The projection's position, after waiting for the highest of `wanted` if any."""
    target = max((w for w in wanted if w is not None), default=None)
    if target is None:
        return await projection_position(resources)
    return await _wait_for(resources, target)


async def _wait_for(resources: Resources, target: int) -> int:
    reached = await projection_position(resources)
    deadline = time.monotonic() + resources.settings.read_wait_ms / 1000
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
        reached = await projection_position(resources)
    READ_WAITS.labels("waited" if waited else "ready").inc()
    return reached
