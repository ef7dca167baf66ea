"""What can happen to a notification, as events.

Each carries its tenant and correlation so the relay can publish Kafka headers without
reading anything else.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from domain.events import DomainEvent
from domain.notifications.values import Channel, Content, Priority


class NotificationEvent(DomainEvent, frozen=True, kw_only=True):
    tenant_id: str
    correlation_id: str | None = None
    traceparent: str | None = None  # W3C trace context of the request that caused it


class NotificationRequested(NotificationEvent, frozen=True, kw_only=True):
    channel: Channel
    recipient: str
    content: Content
    priority: Priority
    requested_by: str  # principal id
    send_at: datetime | None = None
    fallback: tuple[Channel, ...] = ()
    # The address on each fallback channel. Added after the first events were recorded:
    # those decode with it empty.
    fallback_recipients: dict[Channel, str] = msgspec.field(default_factory=dict)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    idempotency_key: str | None = None


class NotificationScheduled(NotificationEvent, frozen=True, kw_only=True):
    send_at: datetime


class DispatchStarted(NotificationEvent, frozen=True, kw_only=True):
    attempt: int
    channel: Channel
    provider: str


class DispatchResumed(NotificationEvent, frozen=True, kw_only=True):
    """An attempt whose dispatcher vanished before recording the answer is made again,
    with the same attempt number (and so the same dedupe key at the provider)."""

    attempt: int
    channel: Channel
    provider: str


class NotificationSent(NotificationEvent, frozen=True, kw_only=True):
    attempt: int
    provider: str
    provider_message_id: str


class NotificationDelivered(NotificationEvent, frozen=True, kw_only=True):
    provider_event_id: str | None = None


class NotificationOpened(NotificationEvent, frozen=True, kw_only=True):
    provider_event_id: str | None = None


class NotificationBounced(NotificationEvent, frozen=True, kw_only=True):
    reason: str
    provider_event_id: str | None = None


class DeliveryFailed(NotificationEvent, frozen=True, kw_only=True):
    attempt: int
    reason: str
    permanent: bool  # the provider says retrying cannot help (bad address, blocked, ...)


class RetryScheduled(NotificationEvent, frozen=True, kw_only=True):
    attempt: int  # the attempt that will run next
    retry_at: datetime


class ChannelFallenBack(NotificationEvent, frozen=True, kw_only=True):
    from_channel: Channel
    to_channel: Channel
    to_recipient: str | None = None  # the address on to_channel; None: the same as before


class NotificationDeadLettered(NotificationEvent, frozen=True, kw_only=True):
    reason: str


class RetryRequested(NotificationEvent, frozen=True, kw_only=True):
    requested_by: str  # an operator re-queueing a failed or dead-lettered notification


class NotificationCancelled(NotificationEvent, frozen=True, kw_only=True):
    cancelled_by: str
    reason: str | None = None


class NotificationErased(NotificationEvent, frozen=True, kw_only=True):
    erased_by: str


class NotificationArchived(NotificationEvent, frozen=True, kw_only=True):
    """Past its tenant's retention: its rows left the read models for `archive`."""

    archive: str  # the archive file's path under the archive directory


class ArchivedAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery attempt as an archive holds it."""

    attempt: int
    channel: str
    provider: str | None
    outcome: str | None
    provider_message_id: str | None
    error: str | None
    permanent: bool | None
    started_at: datetime
    finished_at: datetime | None


class ArchivedNotification(msgspec.Struct, frozen=True, kw_only=True):
    """A notification as an archive holds it: its read-model row when it was archived."""

    channel: Channel
    recipient: str
    priority: Priority
    status: str
    attempts: int
    last_error: str | None
    provider: str | None
    provider_message_id: str | None
    send_at: datetime | None
    requested_at: datetime
    scheduled_at: datetime | None
    dispatched_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    failed_at: datetime | None
    cancelled_at: datetime | None
    dead_lettered_at: datetime | None
    created_position: int  # where its first event was in the log: its place in exports
    attempt_log: tuple[ArchivedAttempt, ...] = ()


class NotificationRestored(NotificationEvent, frozen=True, kw_only=True):
    """Brought back from `archive` into the read models, as it was archived. Its stream
    may have lost its earlier events to retention; `stream_version` is this event's own
    version, so the stream carries on from it."""

    archive: str
    stream_version: int
    notification: ArchivedNotification


NOTIFICATION_EVENTS: tuple[type[DomainEvent], ...] = (
    NotificationRequested,
    NotificationScheduled,
    DispatchStarted,
    DispatchResumed,
    NotificationSent,
    NotificationDelivered,
    NotificationOpened,
    NotificationBounced,
    DeliveryFailed,
    RetryScheduled,
    ChannelFallenBack,
    NotificationDeadLettered,
    RetryRequested,
    NotificationCancelled,
    NotificationErased,
    NotificationArchived,
    NotificationRestored,
)
