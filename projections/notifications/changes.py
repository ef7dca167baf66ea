"""What each notification event changes in the read models, independent of where they live.

The SQL tables and the Redis keys are both written from one `Change` per event, so the two
stores cannot disagree about what an event means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec

from domain.events import DomainEvent
from domain.notifications import events as ev
from infrastructure.privacy.cipher import ERASED


@dataclass(frozen=True, slots=True)
class AttemptChange:
    """A delivery attempt opening (`started`) or closing (`sent`, `failed`)."""

    kind: Literal["started", "sent", "failed"]
    attempt: int
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    status: str
    fields: dict[str, Any]  # notification_view columns to set, besides the bookkeeping ones
    created: bool = False  # the first event: the row does not exist yet
    attempt: AttemptChange | None = None
    archived: str | None = None  # the archive it went to: its rows leave the read models
    # Back from an archive: `fields` is its whole row, these are its attempts.
    restored: tuple[dict[str, Any], ...] | None = None


RecipientHash = Callable[[str, str], bytes | None]  # (tenant, address) -> keyed hash


def no_hash(_tenant: str, _recipient: str) -> bytes | None:
    return None


def change_for(event: DomainEvent, hashed: RecipientHash = no_hash) -> Change:
    """The change `event` makes. Every notification event makes one: each moves the version.
    `hashed` gives the keyed hash that lookups by recipient use instead of the address."""
    change = _change_for(event)
    recipient = change.fields.get("recipient")
    if recipient is not None:
        tenant = getattr(event, "tenant_id", "")
        known = recipient not in {"", ERASED}
        change.fields["recipient_hash"] = hashed(tenant, recipient) if known else None
    return change


def _change_for(event: DomainEvent) -> Change:  # noqa: PLR0911, PLR0912 - a branch per event type
    at: datetime = event.at
    match event:
        case ev.NotificationRequested():
            return Change(
                "requested",
                {
                    "tenant_id": event.tenant_id,
                    "channel": event.channel.value,
                    "recipient": event.recipient,
                    "priority": event.priority.value,
                    "send_at": event.send_at,
                    "requested_at": at,
                },
                created=True,
            )
        case ev.NotificationScheduled():
            return Change("scheduled", {"send_at": event.send_at, "scheduled_at": at})
        case ev.DispatchStarted():
            return Change(
                "dispatching",
                {
                    "channel": event.channel.value,
                    "provider": event.provider,
                    "attempts": event.attempt,
                    "dispatched_at": at,
                },
                attempt=AttemptChange(
                    "started",
                    event.attempt,
                    {"channel": event.channel.value, "provider": event.provider},
                ),
            )
        case ev.DispatchResumed():
            return Change("dispatching", {"provider": event.provider, "dispatched_at": at})
        case ev.NotificationSent():
            return Change(
                "sent",
                {
                    "provider": event.provider,
                    "provider_message_id": event.provider_message_id,
                    "sent_at": at,
                },
                attempt=AttemptChange(
                    "sent", event.attempt, {"provider_message_id": event.provider_message_id}
                ),
            )
        case ev.DeliveryFailed():
            return Change(
                "failed",
                {"last_error": event.reason, "failed_at": at},
                attempt=AttemptChange(
                    "failed", event.attempt, {"error": event.reason, "permanent": event.permanent}
                ),
            )
        case ev.NotificationBounced():
            return Change("bounced", {"last_error": event.reason, "failed_at": at})
        case ev.RetryScheduled():
            return Change("retry_scheduled", {"send_at": event.retry_at})
        case ev.ChannelFallenBack():
            fields = {"channel": event.to_channel.value}
            if event.to_recipient is not None:
                fields["recipient"] = event.to_recipient
            return Change("requested", fields)
        case ev.NotificationDeadLettered():
            return Change("dead_lettered", {"last_error": event.reason, "dead_lettered_at": at})
        case ev.RetryRequested():
            return Change("requested", {})
        case ev.NotificationArchived():
            return Change("archived", {}, archived=event.archive)
        case ev.NotificationRestored():
            return _restored(event)
        case ev.NotificationErased():
            # The recipient is personal data: the read models forget it with the event log.
            return Change(
                "erased", {"recipient": "", "last_error": None, "provider_message_id": None}
            )
    status = _STATUS_ONLY.get(type(event))
    if status is None:
        raise TypeError(f"{type(event).__name__} is not a notification event")
    return Change(status, {f"{status}_at": at})


_STATUS_ONLY: dict[type[DomainEvent], str] = {
    ev.NotificationDelivered: "delivered",
    ev.NotificationOpened: "opened",
    ev.NotificationCancelled: "cancelled",
}


def _restored(event: ev.NotificationRestored) -> Change:
    held = event.notification
    fields = msgspec.structs.asdict(held)
    del fields["attempt_log"]
    fields.update(
        tenant_id=event.tenant_id, channel=held.channel.value, priority=held.priority.value
    )
    attempts = tuple(msgspec.structs.asdict(attempt) for attempt in held.attempt_log)
    return Change(held.status, fields, created=True, restored=attempts)
