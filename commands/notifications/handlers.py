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
    Accepted,
    CancelNotification,
    Recorded,
    RequestNotification,
    RequestNotifications,
    RetryNotification,
)
from domain.errors import InvalidValueError, NotFoundError
from domain.notifications import notification as notifications
from domain.notifications.events import NotificationEvent, NotificationRequested
from domain.notifications.notification import Notification, Status
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.reader import load_stream
from infrastructure.eventstore.store import ConcurrencyError
from infrastructure.eventstore.writer import (
    GroupCommitWriter,
    Idempotency,
    IdempotencyKeyTakenError,
    StreamAppend,
)
from infrastructure.idempotency import recall
from infrastructure.messagebus import Handlers
from infrastructure.metrics import count_notification_events, count_requested

_ATTEMPTS = 3


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
        traceparent=cmd.traceparent,
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
    count_requested(
        (event.channel.value, event.priority.value)
        for append in plan.appends
        for event in append.events
        if isinstance(event, NotificationRequested)
    )
    return plan.accepted(positions)


class IdempotencyKeyReusedError(InvalidValueError):
    def __init__(self) -> None:
        super().__init__(
            "Idempotency-Key", "was first used with a different request; use a new key"
        )


async def request_notifications(
    cmd: RequestNotifications, *, writer: GroupCommitWriter, pool: AsyncConnectionPool
) -> Recorded:
    """Decide and record every request, or, for a key already used, answer as the first time.

    Raises InvalidValueError naming the field of a single bad request, BatchInvalidError
    listing every bad item of several, IdempotencyKeyReusedError for a key first used with
    another request. The key, the fingerprint and the answer commit with the events.
    """
    plan = plan_batch(cmd.requests) if cmd.batch else plan_request(cmd.requests[0])
    key = cmd.idempotency
    if key is None:
        accepted = await record(plan, writer=writer)
        return Recorded(cmd.render(accepted), cmd.status_code, replayed=False)
    stored = await recall(pool, key.tenant_id, key.key)
    if stored is None:
        remember = Idempotency(
            tenant_id=key.tenant_id,
            key=key.key,
            request_hash=key.fingerprint,
            status_code=cmd.status_code,
            response=lambda positions: cmd.render(plan.accepted(positions)),
        )
        try:
            accepted = await record(plan, writer=writer, idempotency=remember)
            return Recorded(cmd.render(accepted), cmd.status_code, replayed=False)
        except IdempotencyKeyTakenError:
            # A concurrent request with the key won: answer as it was answered.
            stored = await recall(pool, key.tenant_id, key.key)
            if stored is None:
                raise
    if stored.request_hash != key.fingerprint:
        raise IdempotencyKeyReusedError
    return Recorded(stored.body, stored.status_code, replayed=True)


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
        count_notification_events(current.channel.value, current.priority.value, events)
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


HANDLERS: Handlers = {
    RequestNotifications: request_notifications,
    CancelNotification: cancel_notification,
    RetryNotification: retry_notification,
}
