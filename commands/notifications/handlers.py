"""Notification use cases. The domain decides; the group-commit writer records.

Requests never read before writing: a new notification's stream cannot conflict, so the
only round trip is the shared commit. Notification ids are UUIDv7: time-ordered, so the
event store's primary key grows at its right edge instead of splitting pages at random.
Cancelling reads the stream, decides, and appends at the version it read; a concurrent
change makes it decide again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from commands.notifications.messages import CancelNotification, RequestNotification
from domain.errors import InvalidValueError, NotFoundError
from domain.notifications import notification as notifications
from domain.notifications.events import NotificationEvent
from domain.notifications.notification import Status
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.reader import load_stream
from infrastructure.eventstore.store import ConcurrencyError
from infrastructure.eventstore.writer import GroupCommitWriter, Idempotency, StreamAppend

_ATTEMPTS = 3


@dataclass(frozen=True)
class Accepted:
    notification_id: UUID
    status: Status
    position: int


class BatchInvalidError(Exception):
    """Some items of a batch are invalid; nothing was recorded. `errors`: (index, field, reason)."""

    def __init__(self, errors: list[tuple[int, str, str]]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} invalid item(s)")


@dataclass(frozen=True)
class Plan:
    """What a request will record: decided, not yet written."""

    appends: list[StreamAppend]

    def accepted(self, positions: Sequence[int]) -> list[Accepted]:
        """Each notification with its status and the position of its last event."""
        result, offset = [], 0
        for append in self.appends:
            offset += len(append.events)
            status = Status.SCHEDULED if len(append.events) > 1 else Status.REQUESTED
            result.append(Accepted(append.stream_id, status, positions[offset - 1]))
        return result


def decide_request(cmd: RequestNotification, now: datetime) -> list[NotificationEvent]:
    return notifications.request(
        tenant_id=cmd.tenant_id,
        channel=cmd.channel,
        recipient=cmd.recipient,
        content=cmd.content,
        priority=cmd.priority,
        send_at=cmd.send_at,
        fallback=cmd.fallback,
        metadata=cmd.metadata,
        idempotency_key=cmd.idempotency_key,
        requested_by=cmd.requested_by,
        correlation_id=cmd.correlation_id,
        at=now,
    )


def plan_request(cmd: RequestNotification) -> Plan:
    """Decide one request; raises InvalidValueError naming the bad field."""
    return Plan([StreamAppend(uuid7(), 0, decide_request(cmd, datetime.now(UTC)))])


def plan_batch(cmds: Sequence[RequestNotification]) -> Plan:
    """Decide every item; raises BatchInvalidError listing every bad item, or plans them all."""
    now = datetime.now(UTC)
    appends: list[StreamAppend] = []
    errors: list[tuple[int, str, str]] = []
    for index, cmd in enumerate(cmds):
        try:
            appends.append(StreamAppend(uuid7(), 0, decide_request(cmd, now)))
        except InvalidValueError as exc:
            errors.append((index, exc.field, exc.reason))
    if errors:
        raise BatchInvalidError(errors)
    return Plan(appends)


async def record(
    plan: Plan, *, writer: GroupCommitWriter, idempotency: Idempotency | None = None
) -> list[Accepted]:
    """Commit a plan in one transaction: all of it, or (raising) none of it."""
    positions = await writer.append(plan.appends, idempotency)
    return plan.accepted(positions)


async def cancel_notification(
    cmd: CancelNotification,
    *,
    writer: GroupCommitWriter,
    pool: AsyncConnectionPool,
    codec: EventCodec,
) -> Accepted:
    for attempt in range(_ATTEMPTS):
        history = await load_stream(pool, codec, cmd.notification_id)
        if not history:
            raise NotFoundError(f"notification {cmd.notification_id} does not exist")
        current = notifications.replay(cmd.notification_id, history)
        if current.tenant_id != cmd.tenant_id:
            raise NotFoundError(f"notification {cmd.notification_id} does not exist")
        events = notifications.cancel(
            current, by=cmd.cancelled_by, reason=cmd.reason, at=datetime.now(UTC)
        )
        if not events:
            return Accepted(cmd.notification_id, current.status, 0)
        try:
            positions = await writer.append(
                [StreamAppend(cmd.notification_id, current.version, events)]
            )
        except ConcurrencyError:
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        return Accepted(cmd.notification_id, Status.CANCELLED, positions[-1])
    raise AssertionError("unreachable")
