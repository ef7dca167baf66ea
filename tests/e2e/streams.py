"""Moving a notification along by appending what the domain decides, as a dispatcher would."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from domain.notifications import notification as notifications
from infrastructure.eventstore.store import EventStore


def advance(store: EventStore, notification_id: str, *steps: Callable[..., Any]) -> int:
    """Append what `steps` decide, one after the other; returns the last event's position."""
    stream = uuid.UUID(notification_id)
    current = notifications.replay(stream, [r.event for r in store.load(stream)])
    start, appended = current.version, []
    for step in steps:
        for event in step(current, datetime.now(UTC)):
            current = notifications.evolve(current, event, stream)
            appended.append(event)
    return max(store.append(stream, start, appended))


def dead_letter(store: EventStore, notification_id: str, reason: str) -> None:
    """Dispatch, fail for good and dead-letter a notification, as a dispatcher would."""
    advance(
        store,
        notification_id,
        lambda n, at: notifications.start_dispatch(n, provider="sandbox", at=at),
        lambda n, at: notifications.record_failure(n, reason=reason, permanent=True, at=at),
        lambda n, at: notifications.dead_letter(n, reason=reason, at=at),
    )
