"""The Notification aggregate's state: its statuses, which events may happen in each
(`TRANSITIONS`), and how each event changes it (`evolve`).

`evolve` enforces the table, so a corrupted stream fails to replay and every decision in
`notification.py` is checked by the same rules.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

import msgspec

from domain.errors import ConflictError, NotFoundError
from domain.events import DomainEvent
from domain.notifications.events import (
    ChannelFallenBack,
    DeliveryFailed,
    DispatchResumed,
    DispatchStarted,
    NotificationArchived,
    NotificationBounced,
    NotificationCancelled,
    NotificationDeadLettered,
    NotificationDelivered,
    NotificationErased,
    NotificationEvent,
    NotificationOpened,
    NotificationRequested,
    NotificationRestored,
    NotificationScheduled,
    NotificationSent,
    RetryRequested,
    RetryScheduled,
)
from domain.notifications.values import (
    Channel,
    Priority,
)


class Status(enum.StrEnum):
    REQUESTED = "requested"
    SCHEDULED = "scheduled"
    DISPATCHING = "dispatching"
    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    BOUNCED = "bounced"
    FAILED = "failed"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"
    ERASED = "erased"
    ARCHIVED = "archived"


class IllegalTransitionError(ConflictError):
    """An event cannot happen to a notification in its current status."""


_S = Status
TRANSITIONS: dict[type[NotificationEvent], frozenset[Status]] = {
    NotificationScheduled: frozenset({_S.REQUESTED}),
    DispatchStarted: frozenset({_S.REQUESTED, _S.SCHEDULED, _S.RETRY_SCHEDULED}),
    DispatchResumed: frozenset({_S.DISPATCHING}),
    NotificationSent: frozenset({_S.DISPATCHING}),
    # A provider may accept a message and report its failure later.
    DeliveryFailed: frozenset({_S.DISPATCHING, _S.SENT}),
    NotificationDelivered: frozenset({_S.SENT}),
    NotificationOpened: frozenset({_S.SENT, _S.DELIVERED}),
    NotificationBounced: frozenset({_S.SENT, _S.DELIVERED}),
    RetryScheduled: frozenset({_S.FAILED}),
    ChannelFallenBack: frozenset({_S.FAILED, _S.BOUNCED}),
    NotificationDeadLettered: frozenset({_S.FAILED, _S.BOUNCED}),
    RetryRequested: frozenset({_S.FAILED, _S.DEAD_LETTERED}),
    NotificationCancelled: frozenset({_S.REQUESTED, _S.SCHEDULED, _S.RETRY_SCHEDULED}),
    NotificationErased: frozenset(set(Status) - {_S.ERASED}),
    # Only once nothing more can happen to it: no dispatcher or provider report is pending.
    NotificationArchived: frozenset(
        {_S.SENT, _S.DELIVERED, _S.OPENED, _S.DEAD_LETTERED, _S.CANCELLED}
    ),
    NotificationRestored: frozenset({_S.ARCHIVED}),
}
# What may still happen to a notification brought back from an archive: it is a record of
# what happened, and its request (its content) may have left the event store.
AFTER_RESTORE: frozenset[type[NotificationEvent]] = frozenset(
    (NotificationArchived, NotificationErased)
)


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    tenant_id: str
    channel: Channel  # the channel now in use; a fallback hop changes it
    recipient: str
    priority: Priority
    status: Status
    attempt: int = 0  # dispatch attempts started on the current channel
    fallback: tuple[Channel, ...] = ()  # channels still left to fall back to, in order
    fallback_recipients: dict[Channel, str] = msgspec.field(default_factory=dict)
    send_at: datetime | None = None
    retry_at: datetime | None = None
    provider: str | None = None  # who the current attempt went to
    dispatch_started_at: datetime | None = None  # when the current attempt started
    last_error: str | None = None
    last_failure_permanent: bool = False
    provider_message_id: str | None = None
    correlation_id: str | None = None
    traceparent: str | None = None  # the trace of the request that asked for it
    version: int = 0  # the version of the stream's last event
    erased: bool = False
    restored: bool = False  # brought back from an archive: see AFTER_RESTORE


def refusal(n: Notification, event: NotificationEvent, why: str = "") -> IllegalTransitionError:
    message = f"cannot apply {type(event).__name__} to a notification that is {n.status}"
    return IllegalTransitionError(f"{message}: {why}" if why else message)


def check_transition(n: Notification, event: NotificationEvent) -> None:
    """Raise unless `event` may happen to `n` now: its status, then what the event claims."""
    allowed = TRANSITIONS.get(type(event))
    if allowed is None:
        raise TypeError(f"not a notification event: {type(event).__name__}")
    if n.status not in allowed:
        raise refusal(n, event)
    if n.restored and type(event) not in AFTER_RESTORE:
        raise refusal(n, event, "it was restored from an archive, as a record only")
    why = ""
    match event:
        case DispatchStarted() if (event.attempt, event.channel) != (n.attempt + 1, n.channel):
            why = f"it is attempt {event.attempt} on {event.channel}"
        case DispatchResumed() if (event.attempt, event.channel) != (n.attempt, n.channel):
            why = f"it resumes attempt {event.attempt} on {event.channel}"
        case NotificationSent() | DeliveryFailed() if event.attempt != n.attempt:
            why = f"it reports attempt {event.attempt}, not {n.attempt}"
        case RetryScheduled() if n.last_failure_permanent:
            why = "the last failure was permanent"
        case RetryScheduled() if event.attempt != n.attempt + 1:
            why = f"it schedules attempt {event.attempt}, not {n.attempt + 1}"
        case NotificationRestored() if event.stream_version != n.version + 1:
            why = f"it claims version {event.stream_version}, not {n.version + 1}"
        case ChannelFallenBack() if not n.fallback:
            why = "no fallback channel is left"
        case ChannelFallenBack() if (event.from_channel, event.to_channel) != (
            n.channel,
            n.fallback[0],
        ):
            why = f"it falls back from {event.from_channel} to {event.to_channel}"
    if why:
        raise refusal(n, event, why)


def evolve(n: Notification | None, event: DomainEvent, notification_id: UUID) -> Notification:
    if isinstance(event, NotificationRequested):
        if n is not None:
            raise refusal(n, event)
        return Notification(
            id=notification_id,
            tenant_id=event.tenant_id,
            channel=event.channel,
            recipient=event.recipient,
            priority=event.priority,
            status=Status.REQUESTED,
            fallback=event.fallback,
            fallback_recipients=dict(event.fallback_recipients),
            send_at=event.send_at,
            correlation_id=event.correlation_id,
            traceparent=event.traceparent,
            version=1,
        )
    if not isinstance(event, NotificationEvent):
        raise TypeError(f"not a notification event: {type(event).__name__}")
    if n is None and isinstance(event, NotificationRestored):
        return _restored(notification_id, event)  # its earlier events left with retention
    if n is None:
        raise ValueError(f"{type(event).__name__} cannot start a notification's stream")
    check_transition(n, event)
    return _apply(n, event, n.version + 1)


def _apply(  # noqa: PLR0911, PLR0912 - one arm per event reads as the state machine it is
    n: Notification, event: NotificationEvent, version: int
) -> Notification:
    replace = msgspec.structs.replace
    match event:
        case NotificationScheduled():
            return replace(n, status=Status.SCHEDULED, send_at=event.send_at, version=version)
        case DispatchStarted():
            return replace(
                n,
                status=Status.DISPATCHING,
                attempt=event.attempt,
                provider=event.provider,
                dispatch_started_at=event.at,
                retry_at=None,
                version=version,
            )
        case DispatchResumed():
            return replace(
                n, provider=event.provider, dispatch_started_at=event.at, version=version
            )
        case NotificationSent():
            return replace(
                n,
                status=Status.SENT,
                provider_message_id=event.provider_message_id,
                version=version,
            )
        case DeliveryFailed():
            return replace(
                n,
                status=Status.FAILED,
                last_error=event.reason,
                last_failure_permanent=event.permanent,
                version=version,
            )
        case NotificationDelivered():
            return replace(n, status=Status.DELIVERED, version=version)
        case NotificationOpened():
            return replace(n, status=Status.OPENED, version=version)
        case NotificationBounced():
            return replace(n, status=Status.BOUNCED, last_error=event.reason, version=version)
        case RetryScheduled():
            return replace(
                n, status=Status.RETRY_SCHEDULED, retry_at=event.retry_at, version=version
            )
        case ChannelFallenBack():
            # A new channel starts its own count of attempts with a new provider.
            return replace(
                n,
                status=Status.REQUESTED,
                channel=event.to_channel,
                recipient=event.to_recipient or n.recipient,
                fallback=n.fallback[1:],
                attempt=0,
                provider=None,
                provider_message_id=None,
                last_failure_permanent=False,
                version=version,
            )
        case NotificationDeadLettered():
            return replace(n, status=Status.DEAD_LETTERED, last_error=event.reason, version=version)
        case RetryRequested():
            return replace(
                n, status=Status.REQUESTED, last_failure_permanent=False, version=version
            )
        case NotificationCancelled():
            return replace(n, status=Status.CANCELLED, version=version)
        case NotificationArchived():
            return replace(n, status=Status.ARCHIVED, version=version)
        case NotificationRestored():
            return _restored(n.id, event)
        case NotificationErased():
            # Provider error text often quotes the address, so it goes with the recipient.
            return replace(
                n,
                status=Status.ERASED,
                recipient="",
                fallback_recipients={},
                last_error=None,
                erased=True,
                version=version,
            )
    raise TypeError(f"not a notification event: {type(event).__name__}")


def _restored(notification_id: UUID, event: NotificationRestored) -> Notification:
    held = event.notification
    return Notification(
        id=notification_id,
        tenant_id=event.tenant_id,
        channel=held.channel,
        recipient=held.recipient,
        priority=held.priority,
        status=Status(held.status),
        attempt=held.attempts,
        provider=held.provider,
        last_error=held.last_error,
        provider_message_id=held.provider_message_id,
        correlation_id=event.correlation_id,
        traceparent=event.traceparent,
        version=event.stream_version,
        restored=True,
    )


def replay(notification_id: UUID, events: Iterable[DomainEvent]) -> Notification:
    n: Notification | None = None
    for event in events:
        n = evolve(n, event, notification_id)
    if n is None:
        raise NotFoundError(f"notification {notification_id} does not exist")
    return n
