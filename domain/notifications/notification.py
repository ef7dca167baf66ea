"""The Notification aggregate: one message to one recipient, from request to its last word.

A function per domain action decides the events it records; each is checked against the
state machine in `state.py` (`TRANSITIONS`, `evolve`), which is re-exported here so that
callers need only this module.
"""

from __future__ import annotations

from datetime import datetime

from domain.errors import InvalidValueError
from domain.notifications.events import (
    ArchivedNotification,
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
from domain.notifications.state import (
    TRANSITIONS,
    IllegalTransitionError,
    Notification,
    Status,
    check_transition,
    evolve,
    refusal,
    replay,
)
from domain.notifications.values import (
    SEND_AT_TOLERANCE,
    Channel,
    Content,
    Priority,
    check_content,
    check_fallback,
    check_fallback_recipients,
    check_idempotency_key,
    check_metadata,
    check_recipient,
    check_send_at,
)

RECIPIENT_PLACEHOLDER = "[recipient]"


def without_addresses(n: Notification, text: str) -> str:
    """`text` (a provider's error, say) with the notification's addresses taken out: error
    texts often quote them, and an error is kept where an address would have to be sealed."""
    for address in {n.recipient, *n.fallback_recipients.values()}:
        if address:
            text = text.replace(address, RECIPIENT_PLACEHOLDER)
    return text


def _decided(n: Notification, event: NotificationEvent) -> list[NotificationEvent]:
    check_transition(n, event)
    return [event]


def request(
    *,
    tenant_id: str,
    channel: Channel,
    recipient: str,
    content: Content,
    priority: Priority,
    send_at: datetime | None,
    fallback: tuple[Channel, ...],
    metadata: dict[str, str],
    idempotency_key: str | None,
    requested_by: str,
    correlation_id: str | None,
    at: datetime,
    traceparent: str | None = None,
    fallback_recipients: dict[Channel, str] | None = None,
) -> list[NotificationEvent]:
    # Checked in the order a request lists its fields, so the first error is the first field.
    recipient = check_recipient(channel, recipient)
    content = check_content(channel, content)
    send_at = check_send_at(send_at, at)
    fallback = check_fallback(channel, tuple(fallback))
    recipients = check_fallback_recipients(fallback, fallback_recipients or {})
    for other in fallback:  # the content must suit every channel it may go out on
        check_content(other, content)
    metadata = check_metadata(metadata)
    idempotency_key = check_idempotency_key(idempotency_key)
    requested = NotificationRequested(
        at=at,
        tenant_id=tenant_id,
        correlation_id=correlation_id,
        traceparent=traceparent,
        channel=channel,
        recipient=recipient,
        content=content,
        priority=priority,
        requested_by=requested_by,
        send_at=send_at,
        fallback=fallback,
        fallback_recipients=recipients,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )
    if send_at is None or send_at <= at + SEND_AT_TOLERANCE:
        return [requested]
    scheduled = NotificationScheduled(
        at=at,
        tenant_id=tenant_id,
        correlation_id=correlation_id,
        traceparent=traceparent,
        send_at=send_at,
    )
    return [requested, scheduled]


def start_dispatch(n: Notification, *, provider: str, at: datetime) -> list[NotificationEvent]:
    due = n.retry_at if n.status is Status.RETRY_SCHEDULED else n.send_at
    event = DispatchStarted(
        at=at,
        tenant_id=n.tenant_id,
        correlation_id=n.correlation_id,
        traceparent=n.traceparent,
        attempt=n.attempt + 1,
        channel=n.channel,
        provider=provider,
    )
    if due is not None and at < due - SEND_AT_TOLERANCE:
        raise refusal(n, event, f"it is not due until {due.isoformat()}")
    return _decided(n, event)


def resume_dispatch(n: Notification, *, provider: str, at: datetime) -> list[NotificationEvent]:
    """Make the open attempt again; the caller has decided its dispatcher is gone."""
    event = DispatchResumed(
        at=at,
        tenant_id=n.tenant_id,
        correlation_id=n.correlation_id,
        traceparent=n.traceparent,
        attempt=n.attempt,
        channel=n.channel,
        provider=provider,
    )
    return _decided(n, event)


def record_sent(
    n: Notification, *, provider_message_id: str, at: datetime
) -> list[NotificationEvent]:
    return _decided(
        n,
        NotificationSent(
            at=at,
            tenant_id=n.tenant_id,
            correlation_id=n.correlation_id,
            traceparent=n.traceparent,
            attempt=n.attempt,
            provider=n.provider or "",
            provider_message_id=provider_message_id,
        ),
    )


def record_failure(
    n: Notification, *, reason: str, permanent: bool, at: datetime
) -> list[NotificationEvent]:
    event = DeliveryFailed(
        at=at,
        tenant_id=n.tenant_id,
        correlation_id=n.correlation_id,
        traceparent=n.traceparent,
        attempt=n.attempt,
        reason=without_addresses(n, reason),
        permanent=permanent,
    )
    return _decided(n, event)


def schedule_retry(n: Notification, *, retry_at: datetime, at: datetime) -> list[NotificationEvent]:
    if retry_at.tzinfo is None or retry_at.utcoffset() is None:
        raise InvalidValueError("retry_at", "must include a timezone offset")
    if retry_at < at:
        raise InvalidValueError("retry_at", "is in the past")
    event = RetryScheduled(
        at=at,
        tenant_id=n.tenant_id,
        correlation_id=n.correlation_id,
        traceparent=n.traceparent,
        attempt=n.attempt + 1,
        retry_at=retry_at,
    )
    return _decided(n, event)


def fall_back(n: Notification, *, at: datetime) -> list[NotificationEvent]:
    # With no fallback left the event cannot even be built; refuse in evolve's words.
    to_channel = n.fallback[0] if n.fallback else n.channel
    event = ChannelFallenBack(
        at=at,
        tenant_id=n.tenant_id,
        correlation_id=n.correlation_id,
        traceparent=n.traceparent,
        from_channel=n.channel,
        to_channel=to_channel,
        to_recipient=n.fallback_recipients.get(to_channel),
    )
    return _decided(n, event)


def dead_letter(n: Notification, *, reason: str, at: datetime) -> list[NotificationEvent]:
    event = NotificationDeadLettered(
        at=at,
        tenant_id=n.tenant_id,
        correlation_id=n.correlation_id,
        traceparent=n.traceparent,
        reason=without_addresses(n, reason),
    )
    return _decided(n, event)


def record_delivered(
    n: Notification, *, at: datetime, provider_event_id: str | None = None
) -> list[NotificationEvent]:
    # Providers repeat and reorder their reports: what is already known records nothing.
    if n.status in {Status.DELIVERED, Status.OPENED}:
        return []
    event = NotificationDelivered(
        at=at,
        tenant_id=n.tenant_id,
        correlation_id=n.correlation_id,
        traceparent=n.traceparent,
        provider_event_id=provider_event_id,
    )
    return _decided(n, event)


def record_opened(
    n: Notification, *, at: datetime, provider_event_id: str | None = None
) -> list[NotificationEvent]:
    if n.status is Status.OPENED:
        return []
    event = NotificationOpened(
        at=at,
        tenant_id=n.tenant_id,
        correlation_id=n.correlation_id,
        traceparent=n.traceparent,
        provider_event_id=provider_event_id,
    )
    return _decided(n, event)


def record_bounced(
    n: Notification, *, reason: str, at: datetime, provider_event_id: str | None = None
) -> list[NotificationEvent]:
    event = NotificationBounced(
        at=at,
        tenant_id=n.tenant_id,
        correlation_id=n.correlation_id,
        traceparent=n.traceparent,
        reason=without_addresses(n, reason),
        provider_event_id=provider_event_id,
    )
    return _decided(n, event)


def request_retry(n: Notification, *, by: str, at: datetime) -> list[NotificationEvent]:
    event = RetryRequested(
        at=at, tenant_id=n.tenant_id, correlation_id=n.correlation_id, requested_by=by
    )
    return _decided(n, event)


def cancel(
    n: Notification, *, by: str, reason: str | None, at: datetime
) -> list[NotificationEvent]:
    if n.status is Status.CANCELLED:
        return []
    event = NotificationCancelled(
        at=at,
        tenant_id=n.tenant_id,
        correlation_id=n.correlation_id,
        traceparent=n.traceparent,
        cancelled_by=by,
        reason=reason,
    )
    return _decided(n, event)


def erase(n: Notification, *, by: str, at: datetime) -> list[NotificationEvent]:
    if n.erased:
        return []
    event = NotificationErased(
        at=at, tenant_id=n.tenant_id, correlation_id=n.correlation_id, erased_by=by
    )
    return _decided(n, event)


def archive(
    *, tenant_id: str, status: Status, archive_path: str, at: datetime
) -> NotificationArchived:
    """Take a notification past its retention out of the read models, into `archive_path`;
    only once it is in a final status (IllegalTransitionError otherwise).

    Decided from its read-model row, not its stream: the caller appends the event only while
    the stream is still at the row's version, so the row's status is the stream's."""
    if status not in TRANSITIONS[NotificationArchived]:
        raise IllegalTransitionError(f"cannot archive a notification that is {status}")
    return NotificationArchived(tenant_id=tenant_id, archive=archive_path, at=at)


def restore(
    *,
    tenant_id: str,
    archived_version: int,
    held: ArchivedNotification,
    archive_path: str,
    at: datetime,
) -> NotificationRestored:
    """Bring an archived notification back as `archive_path` holds it.

    Decided from the projection's record of its archival (`archived_version`, the version of
    its NotificationArchived event): the caller appends it only while that is still the
    stream's last event, or the stream is empty because its events left with retention."""
    return NotificationRestored(
        tenant_id=tenant_id,
        archive=archive_path,
        stream_version=archived_version + 1,
        notification=held,
        at=at,
    )


__all__ = [
    "TRANSITIONS",
    "IllegalTransitionError",
    "Notification",
    "Status",
    "archive",
    "cancel",
    "dead_letter",
    "erase",
    "evolve",
    "fall_back",
    "record_bounced",
    "record_delivered",
    "record_failure",
    "record_opened",
    "record_sent",
    "replay",
    "request",
    "request_retry",
    "restore",
    "resume_dispatch",
    "schedule_retry",
    "start_dispatch",
]
