"""Loads streams from the event store, asynchronously, for commands that decide on history."""

from __future__ import annotations

import asyncio
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
    return await decoded(codec, [(topic, bytes(state)) for _, topic, state in rows])


async def decoded(codec: EventCodec, items: list[tuple[str, bytes]]) -> list[DomainEvent]:
    """`items` decoded; in a worker thread when their sealed fields need keys fetched."""
    if codec.keys_missing([state for _, state in items]):
        return await asyncio.to_thread(codec.decode_many, items)
    return codec.decode_many(items)


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
    rows = await cursor.fetchall()
    events = await decoded(codec, [(topic, bytes(state)) for _, topic, state in rows])
    for (stream_id, _, _), event in zip(rows, events, strict=True):
        streams.setdefault(stream_id, []).append(event)
    return streams
