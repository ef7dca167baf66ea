"""Notification commands, in the imperative, as the use cases receive them, and their results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import msgspec

from domain.notifications.notification import Status
from domain.notifications.values import Channel, Content, Priority
from infrastructure.messagebus import Command


@dataclass(frozen=True)
class Accepted:
    notification_id: UUID
    status: Status
    position: int  # of its last event recorded now; 0 when nothing was

    @property
    def recorded(self) -> bool:
        return self.position > 0


@dataclass(frozen=True)
class Recorded:
    """The answer to a request: the first one again when its Idempotency-Key was used."""

    body: bytes
    status_code: int
    replayed: bool


class RequestNotification(msgspec.Struct, frozen=True, kw_only=True):
    """One notification asked for; `RequestNotifications` records one or many."""

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
    traceparent: str | None = None  # W3C trace context of the request, kept in its events


class IdempotentRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An Idempotency-Key and what makes a retry "the same request" (its fingerprint)."""

    tenant_id: str
    key: str
    fingerprint: bytes


class RequestNotifications(Command[Recorded], frozen=True, kw_only=True):
    """Record every request, all or none. `render` makes the answer from what was accepted;
    with `idempotency`, that answer is stored under the key and given to every retry.
    A `batch` reports every bad item by index; otherwise there is one request."""

    requests: Sequence[RequestNotification]
    render: Callable[[Sequence[Accepted]], bytes]
    status_code: int
    batch: bool = False
    idempotency: IdempotentRequest | None = None


class CancelNotification(Command[Accepted], frozen=True, kw_only=True):
    tenant_id: str
    notification_id: UUID
    cancelled_by: str
    reason: str | None = None
    correlation_id: str | None = None


class RetryNotification(Command[Accepted], frozen=True, kw_only=True):
    tenant_id: str
    notification_id: UUID
    requested_by: str
