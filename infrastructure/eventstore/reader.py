"""Loads one stream from the event store, asynchronously, for commands that decide on history."""

from __future__ import annotations

from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from domain.events import DomainEvent
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EVENTS_TABLE

_SELECT = (
    f"SELECT originator_version, topic, state FROM {EVENTS_TABLE}"  # noqa: S608 - our table
    " WHERE originator_id = %s ORDER BY originator_version"
)


async def load_stream(
    pool: AsyncConnectionPool, codec: EventCodec, stream_id: UUID
) -> list[DomainEvent]:
    async with pool.connection() as conn:
        rows = await (await conn.execute(_SELECT, (stream_id,))).fetchall()
    return [codec.decode(topic, bytes(state)) for _, topic, state in rows]
