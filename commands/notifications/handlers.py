"""Notification use cases. The domain decides; the group-commit writer records.

Requests never read before writing: a new notification's stream cannot conflict, so the
only round trip is the shared commit. Notification ids are UUIDv7: time-ordered, so the
event store's primary key grows at its right edge instead of splitting pages at random.
Every other change (cancel, retry, a provider's report) goes through `decide_and_append`:
read the stream, decide, append at the version read; a concurrent change makes it decide again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from commands.notifications.messages import (
    CancelNotification,
    RequestNotification,
    RetryNotification,
)
from domain.errors import InvalidValueError, NotFoundError
from domain.notifications import notification as notifications
from domain.notifications.events import NotificationEvent
from domain.notifications.notification import Notification, Status
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.reader import load_stream
from infrastructure.eventstore.store import ConcurrencyError
from infrastructure.eventstore.writer import GroupCommitWriter, Idempotency, StreamAppend

_ATTEMPTS = 3


@dataclass(frozen=True)
class Accepted:
    notification_id: UUID
    status: Status
    position: int  # of its last event recorded now; 0 when nothing was

    @property
    def recorded(self) -> bool:
        return self.position > 0


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
        fallback_recipients=cmd.fallback_recipients,
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


async def decide_and_append(
    notification_id: UUID,
    decide: Callable[[Notification], Sequence[NotificationEvent]],
    *,
    tenant_id: str | None,
    writer: GroupCommitWriter,
    pool: AsyncConnectionPool,
    codec: EventCodec,
) -> Accepted:
    """Load the notification, let `decide` choose its events, and append them at the version
    read; when another change got there first, load and decide again.

    `tenant_id` is the caller's tenant: another tenant's notification does not exist for it.
    None only for callers that belong to no tenant, such as a provider's signed report.
    Whatever `decide` raises propagates; deciding nothing records nothing (position 0).
    """
    for attempt in range(_ATTEMPTS):
        history = await load_stream(pool, codec, notification_id)
        if not history:
            raise NotFoundError(f"notification {notification_id} does not exist")
        current = notifications.replay(notification_id, history)
        if tenant_id is not None and current.tenant_id != tenant_id:
            raise NotFoundError(f"notification {notification_id} does not exist")
        events = list(decide(current))
        if not events:
            return Accepted(notification_id, current.status, 0)
        after = current
        for event in events:
            after = notifications.evolve(after, event, notification_id)
        try:
            positions = await writer.append(
                [StreamAppend(notification_id, current.version, events)]
            )
        except ConcurrencyError:
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        return Accepted(notification_id, after.status, positions[-1])
    raise AssertionError("unreachable")


async def cancel_notification(
    cmd: CancelNotification,
    *,
    writer: GroupCommitWriter,
    pool: AsyncConnectionPool,
    codec: EventCodec,
) -> Accepted:
    return await decide_and_append(
        cmd.notification_id,
        lambda n: notifications.cancel(
            n, by=cmd.cancelled_by, reason=cmd.reason, at=datetime.now(UTC)
        ),
        tenant_id=cmd.tenant_id,
        writer=writer,
        pool=pool,
        codec=codec,
    )


async def retry_notification(
    cmd: RetryNotification,
    *,
    writer: GroupCommitWriter,
    pool: AsyncConnectionPool,
    codec: EventCodec,
) -> Accepted:
    """Re-queue a failed or dead-lettered notification; IllegalTransitionError otherwise."""
    return await decide_and_append(
        cmd.notification_id,
        lambda n: notifications.request_retry(n, by=cmd.requested_by, at=datetime.now(UTC)),
        tenant_id=cmd.tenant_id,
        writer=writer,
        pool=pool,
        codec=codec,
    )
