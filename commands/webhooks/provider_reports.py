"""What a provider's delivery report means for a notification: parsing and deciding, no I/O.

Providers repeat reports, reorder them, and report on attempts that have since been
superseded. A report counts only for the notification's current attempt on the channel
the provider serves, and only for the message that attempt sent; anything already known
or no longer possible records nothing. A report that overtakes its own Sent event is
neither: the caller must ask the provider to send it again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from domain.notifications import notification as notifications
from domain.notifications.events import NotificationEvent
from domain.notifications.notification import IllegalTransitionError, Notification, Status
from domain.notifications.values import Channel

MAX_REASON_CHARS = 500


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    OPENED = "opened"
    BOUNCED = "bounced"


SENDGRID_OUTCOMES = {
    "delivered": Outcome.DELIVERED,
    "open": Outcome.OPENED,
    "bounce": Outcome.BOUNCED,
    "dropped": Outcome.BOUNCED,
}  # "processed" and "deferred" say nothing final
TWILIO_OUTCOMES = {
    "delivered": Outcome.DELIVERED,
    "undelivered": Outcome.BOUNCED,
    "failed": Outcome.BOUNCED,
}  # "queued" and "sent" say nothing final


class UnaddressedReportError(Exception):
    """The report names no notification and attempt that could exist."""


class NotSentYetError(Exception):
    """The report is about the attempt in flight, whose Sent event is not recorded yet."""


@dataclass(frozen=True)
class Report:
    notification_id: UUID
    attempt: int
    channel: Channel  # the channel of the provider that reports
    outcome: Outcome
    provider_message_id: str | None
    provider_event_id: str | None
    reason: str  # for a bounce: what the provider said
    claimed_tenant: str | None = None  # what the provider echoes back; for logs only


class SendGridEvent(msgspec.Struct, frozen=True):
    """One event of a SendGrid Event Webhook batch; Herald's custom args are top-level keys."""

    event: str
    sg_event_id: str | None = None
    sg_message_id: str | None = None
    reason: str | None = None
    herald_notification_id: str | None = None
    herald_attempt: int | str | None = None
    herald_tenant: str | None = None


def from_sendgrid(event: SendGridEvent) -> Report | None:
    """The report in a SendGrid event; None for events that are not an outcome."""
    outcome = SENDGRID_OUTCOMES.get(event.event)
    if outcome is None:
        return None
    reason = f"sendgrid {event.event}" + (f": {event.reason}" if event.reason else "")
    return Report(
        notification_id=_uuid(event.herald_notification_id),
        attempt=_attempt(event.herald_attempt),
        channel=Channel.EMAIL,
        outcome=outcome,
        provider_message_id=event.sg_message_id,
        provider_event_id=event.sg_event_id,
        reason=reason[:MAX_REASON_CHARS],
        claimed_tenant=event.herald_tenant,
    )


def from_twilio(query: Mapping[str, str], form: Mapping[str, str]) -> Report | None:
    """A Twilio status callback's report: ids from Herald's callback URL, status from the form."""
    status = form.get("MessageStatus", "")
    outcome = TWILIO_OUTCOMES.get(status)
    if outcome is None:
        return None
    sid = form.get("MessageSid") or None
    error = form.get("ErrorCode")
    reason = f"twilio {status}" + (f": error code {error}" if error else "")
    return Report(
        notification_id=_uuid(query.get("notification_id")),
        attempt=_attempt(query.get("attempt")),
        channel=Channel.SMS,
        outcome=outcome,
        provider_message_id=sid,
        provider_event_id=f"{sid}:{status}" if sid else None,
        reason=reason[:MAX_REASON_CHARS],
    )


RECEIPT_OUTCOMES = {"delivered": Outcome.DELIVERED, "opened": Outcome.OPENED}


class PushReceipt(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What an app posts back when a push arrives or is opened (its data payload's ids)."""

    notification_id: UUID
    attempt: Annotated[int, msgspec.Meta(ge=1)]
    receipt: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    event: Literal["delivered", "opened"] = "delivered"


def from_push_receipt(receipt: PushReceipt) -> Report:
    return Report(
        notification_id=receipt.notification_id,
        attempt=receipt.attempt,
        channel=Channel.PUSH,
        outcome=RECEIPT_OUTCOMES[receipt.event],
        provider_message_id=None,
        provider_event_id=f"receipt:{receipt.attempt}:{receipt.event}",
        reason="",
    )


def decide(n: Notification, report: Report, *, at: datetime) -> list[NotificationEvent]:
    """The events `report` adds to `n`: none when stale or already known.

    Raises NotSentYetError when the report is about the attempt still dispatching.
    """
    if (n.channel, n.attempt) != (report.channel, report.attempt):
        return []  # an earlier attempt, or a channel fallen back from since
    if n.status is Status.DISPATCHING:
        raise NotSentYetError(f"attempt {n.attempt} of {n.id} is not recorded as sent yet")
    if not _same_message(n.provider_message_id, report.provider_message_id):
        return []
    event_id = report.provider_event_id
    try:
        match report.outcome:
            case Outcome.DELIVERED:
                return notifications.record_delivered(n, at=at, provider_event_id=event_id)
            case Outcome.OPENED:
                return notifications.record_opened(n, at=at, provider_event_id=event_id)
            case Outcome.BOUNCED:
                return notifications.record_bounced(
                    n, reason=report.reason, at=at, provider_event_id=event_id
                )
    except IllegalTransitionError:
        return []  # no longer possible: a second bounce, a delivery after a bounce, ...


def _same_message(current: str | None, reported: str | None) -> bool:
    if current is None or reported is None:
        return True
    # SendGrid's event ids extend the X-Message-Id it answered the send with.
    return reported == current or reported.startswith(f"{current}.")


def _uuid(raw: str | None) -> UUID:
    try:
        return UUID(raw or "")
    except ValueError:
        raise UnaddressedReportError(f"{raw!r} is not a notification id") from None


def _attempt(raw: int | str | None) -> int:
    try:
        attempt = int(raw or 0)
    except ValueError:
        attempt = 0
    if attempt < 1:
        raise UnaddressedReportError(f"{raw!r} is not an attempt number")
    return attempt
