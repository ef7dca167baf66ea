"""Loads streams from the event store, asynchronously, for commands that decide on history."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
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


_SELECT_MANY = (
    f"SELECT originator_id, topic, state FROM {EVENTS_TABLE}"  # noqa: S608 - our table
    " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
)


async def load_streams(
    conn: psycopg.AsyncConnection[Any], codec: EventCodec, stream_ids: list[UUID]
) -> dict[UUID, list[DomainEvent]]:
    """Several streams in one query, each in order; a stream with no events is absent."""
    if not stream_ids:
        return {}
    streams: dict[UUID, list[DomainEvent]] = {}
    cursor = await conn.execute(_SELECT_MANY, (stream_ids,), binary=True)
    async for stream_id, topic, state in cursor:
        streams.setdefault(stream_id, []).append(codec.decode(topic, bytes(state)))
    return streams
