"""Notification commands, in the imperative, as the use cases receive them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from domain.notifications.values import Channel, Content, Priority


class RequestNotification(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    channel: Channel
    recipient: str
    content: Content
    priority: Priority = Priority.NORMAL
    send_at: datetime | None = None
    fallback: tuple[Channel, ...] = ()
    fallback_recipients: dict[Channel, str] = msgspec.field(default_factory=dict)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    idempotency_key: str | None = None
    requested_by: str
    correlation_id: str | None = None


class CancelNotification(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    notification_id: UUID
    cancelled_by: str
    reason: str | None = None
    correlation_id: str | None = None


class RetryNotification(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    notification_id: UUID
    requested_by: str
