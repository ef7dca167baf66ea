"""Filling the event log the way the api would, for benchmarks that start from a full log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime

from domain.notifications import notification as notifications
from domain.notifications.events import NotificationEvent
from domain.notifications.values import Channel, Content, Priority
from infrastructure.eventstore import catalog
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.writer import GroupCommitWriter, StreamAppend

CONTENT = Content(subject="Your order shipped", body="It left the warehouse this morning.")
CHUNK = 5000  # streams per group commit


def requested(
    *,
    tenant: str,
    channel: Channel,
    recipient: str,
    at: datetime,
    correlation_id: str | None = None,
    traceparent: str | None = None,
) -> list[NotificationEvent]:
    """A plain request (normal priority, inline content, no schedule or fallback)."""
    return notifications.request(
        tenant_id=tenant,
        channel=channel,
        recipient=recipient,
        content=CONTENT,
        priority=Priority.NORMAL,
        send_at=None,
        fallback=(),
        metadata={},
        idempotency_key=None,
        requested_by="perf",
        correlation_id=correlation_id,
        traceparent=traceparent,
        at=at,
    )


def append_rounds(
    database_url: str,
    rounds: Sequence[Callable[[], Sequence[StreamAppend]]],
    codec: EventCodec | None = None,
) -> None:
    """Append each round's streams through the group-commit writer, in chunks of CHUNK.

    A round is built only once the previous one is committed, so it may follow on from it.
    """

    async def go() -> None:
        writer = GroupCommitWriter(database_url, codec or catalog.codec())
        await writer.start()
        try:
            for build in rounds:
                appends = build()
                for start in range(0, len(appends), CHUNK):
                    await writer.append(appends[start : start + CHUNK])
        finally:
            await writer.stop()

    asyncio.run(go())
