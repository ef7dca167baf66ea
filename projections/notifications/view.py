"""One handler per event type, each an SQL write to `notification_view` guarded by version.

A row changes only when an event's version is the next one after the row's: a redelivered
or older event changes nothing, so applying the log twice leaves the same table.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.events import DomainEvent
from domain.notifications import events as ev

Write = tuple[str, tuple[Any, ...]]

_INSERT = (
    "INSERT INTO notification_view (notification_id, tenant_id, channel, recipient, priority,"
    " status, send_at, requested_at, updated_at, version, position)"
    " VALUES (%s, %s, %s, %s, %s, 'requested', %s, %s, %s, %s, %s)"
    " ON CONFLICT (notification_id) DO NOTHING"
)


def _update(assignments: str) -> str:
    return (
        f"UPDATE notification_view SET {assignments}, updated_at = %s, version = %s,"  # noqa: S608
        " position = %s WHERE notification_id = %s AND version = %s - 1"
    )


_STATUS = _update("status = %s")
_SCHEDULED = _update("status = 'scheduled', send_at = %s")
_DISPATCH = _update("status = 'dispatching', attempts = attempts + 1, channel = %s")
_SENT = _update("status = 'sent', provider_message_id = %s")
_ERROR = _update("status = %s, last_error = %s")
_FALLBACK = _update("status = 'requested', channel = %s")
_ERASED = _update("status = 'erased', recipient = '', last_error = NULL")


def write_for(  # noqa: PLR0911 - one branch per event type
    event: DomainEvent, stream_id: UUID, version: int, position: int
) -> Write | None:
    """The SQL that applies `event` to the view, or None when it does not touch it."""
    tail = (event.at, version, position, stream_id, version)
    match event:
        case ev.NotificationRequested():
            return (
                _INSERT,
                (
                    stream_id,
                    event.tenant_id,
                    event.channel.value,
                    event.recipient,
                    event.priority.value,
                    event.send_at,
                    event.at,
                    event.at,
                    version,
                    position,
                ),
            )
        case ev.NotificationScheduled():
            return _SCHEDULED, (event.send_at, *tail)
        case ev.DispatchStarted():
            return _DISPATCH, (event.channel.value, *tail)
        case ev.NotificationSent():
            return _SENT, (event.provider_message_id, *tail)
        case ev.DeliveryFailed():
            return _ERROR, ("failed", event.reason, *tail)
        case ev.NotificationBounced():
            return _ERROR, ("bounced", event.reason, *tail)
        case ev.NotificationDeadLettered():
            return _ERROR, ("dead_lettered", event.reason, *tail)
        case ev.ChannelFallenBack():
            return _FALLBACK, (event.to_channel.value, *tail)
        case ev.NotificationErased():
            return _ERASED, tail
    status = _SIMPLE_STATUS.get(type(event))
    return (_STATUS, (status, *tail)) if status else None


_SIMPLE_STATUS: dict[type[DomainEvent], str] = {
    ev.NotificationDelivered: "delivered",
    ev.NotificationOpened: "opened",
    ev.RetryScheduled: "retry_scheduled",
    ev.RetryRequested: "requested",
    ev.NotificationCancelled: "cancelled",
}
