"""Driving one notification from its event stream as far as it can go now.

The dispatch policy (`domain/notifications/dispatch_policy.py`) says what comes next:
record an event, wait, send, or repeat an attempt whose outcome was never recorded. A send
appends DispatchStarted (or DispatchResumed) at the version read, so of two dispatchers only
one goes on to call; the provider's answer is then recorded with what follows from it (a
retry, a fallback hop, a dead letter) in one append.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import structlog
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span
from psycopg_pool import AsyncConnectionPool

from commands.dispatch.calls import Outcome, ProviderCalls
from commands.dispatch.queue import Claimed, Release
from domain.errors import ConflictError
from domain.events import DomainEvent
from domain.notifications import notification as notifications
from domain.notifications.dispatch_policy import (
    PRIORITY_RANK,
    Done,
    Record,
    Resend,
    RetryPolicy,
    Send,
    WaitUntil,
    next_step,
)
from domain.notifications.events import NotificationEvent, NotificationRequested
from domain.notifications.notification import Notification, Status
from domain.notifications.values import Channel
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.reader import load_streams
from infrastructure.eventstore.store import ConcurrencyError
from infrastructure.eventstore.writer import GroupCommitWriter, StoreUnavailableError, StreamAppend
from infrastructure.log import get_logger
from infrastructure.metrics import count_notification_events
from infrastructure.providers.provider import Provider
from infrastructure.tracing import impersonal_span, sampled_parent, start_span, tracing

log = get_logger(__name__)

MAX_DECISIONS = 16  # per notification and turn: a stream that keeps moving is left for later


class OutcomeNotRecordedError(Exception):
    """A provider's answer could not be recorded this turn; it is kept for the next."""


class Driver:
    def __init__(
        self,
        *,
        providers: dict[Channel, Provider],
        calls: ProviderCalls,
        policy: RetryPolicy,
        writer: GroupCommitWriter,
        pool: AsyncConnectionPool,
        codec: EventCodec,
    ) -> None:
        self._providers = providers
        self._calls = calls
        self._policy = policy
        self._writer = writer
        self._pool = pool
        self._codec = codec
        self._rng = random.Random()  # noqa: S311 - jitter, not secrecy
        self.counts: dict[str, int] = {"sent": 0, "failed": 0, "deferred": 0}
        # Provider answers not yet recorded (the store was down): recorded on the next turn
        # instead of calling the provider again.
        self._unrecorded: dict[tuple[UUID, Channel, int], Outcome] = {}

    async def advance(self, item: Claimed, history: list[DomainEvent]) -> Release:
        """Take the notification as far as it can go now; the Release says when next."""
        nid = item.notification_id
        if not history:
            return Release(nid, 0, None, item.rank)
        requested = history[0]
        if not isinstance(requested, NotificationRequested):
            raise TypeError(f"stream {nid} does not start with NotificationRequested")
        n = notifications.replay(nid, history)
        rank = PRIORITY_RANK[n.priority]
        # Every line logged while handling it names it, and the request that asked for it.
        with structlog.contextvars.bound_contextvars(
            notification_id=str(nid), correlation_id=requested.correlation_id
        ):
            for _ in range(MAX_DECISIONS):
                now = datetime.now(UTC)
                step = next_step(n, self._policy, now=now, rng=self._rng)
                try:
                    match step:
                        case Done():
                            return Release(nid, n.version, None, rank)
                        case WaitUntil(due=due):
                            return Release(nid, n.version, due, rank)
                        case Record(events=events):
                            n = await self._append(n, events)
                        case Resend() if (nid, n.channel, n.attempt) in self._unrecorded:
                            kept = self._unrecorded[(nid, n.channel, n.attempt)]
                            n = await self._settle(n, kept)
                        case Send() | Resend():
                            sent = await self._send(step, n, requested, rank)
                            if isinstance(sent, Release):
                                return sent
                            n = sent
                except (ConcurrencyError, ConflictError):
                    # Another writer moved the stream (a cancel, an erasure, an operator's
                    # retry): read it again and decide afresh.
                    n = await self._reload(nid)
            return Release(nid, n.version, datetime.now(UTC), rank)

    async def _send(
        self, step: Send | Resend, n: Notification, requested: NotificationRequested, rank: int
    ) -> Notification | Release:
        """Make the attempt and record its answer; a Release when the circuit says wait."""
        nid = n.id
        provider = self._providers[n.channel]
        admission = await self._calls.admit(provider.name)
        if not admission.admitted:
            self.counts["deferred"] += 1
            later = datetime.now(UTC) + timedelta(seconds=max(admission.wait_s, 0.05))
            return Release(nid, n.version, later, rank)
        with _attempt_span(n, provider.name):
            return await self._attempt(step, n, requested, rank, provider, probe=admission.probe)

    async def _attempt(
        self,
        step: Send | Resend,
        n: Notification,
        requested: NotificationRequested,
        rank: int,
        provider: Provider,
        *,
        probe: bool,
    ) -> Notification:
        """In one of the provider's slots: record that the attempt starts, call, then
        record the answer."""
        nid = n.id
        async with self._calls.slot(provider.name, rank):
            # Appended at the version read: of two dispatchers, only one goes on to call.
            if isinstance(step, Send):
                begin = notifications.start_dispatch(
                    n, provider=provider.name, at=datetime.now(UTC)
                )
            else:
                log.warning(
                    "repeating an attempt whose outcome was never recorded",
                    notification_id=str(nid),
                    attempt=n.attempt,
                    provider=provider.name,
                )
                begin = notifications.resume_dispatch(
                    n, provider=provider.name, at=datetime.now(UTC)
                )
            n = await self._append(n, begin)
            trace.get_current_span().set_attribute("herald.attempt", n.attempt)
            outcome = await self._calls.attempt(provider, n, requested, probe=probe)
        self._unrecorded[(nid, n.channel, n.attempt)] = outcome
        return await self._settle(n, outcome)

    async def _reload(self, nid: UUID) -> Notification:
        async with self._pool.connection() as conn:
            history = (await load_streams(conn, self._codec, [nid])).get(nid, [])
        return notifications.replay(nid, history)

    async def _settle(self, n: Notification, outcome: Outcome) -> Notification:
        """Record the outcome of the attempt just made, however the stream moved meanwhile.

        An outcome in hand is never thrown away while its attempt is still open: deciding
        afresh from the stream would find the attempt unanswered and call the provider again.
        While the store is unreachable it keeps trying (the row stays held); should it give
        up, the outcome waits in `_unrecorded` for this notification's next turn.
        """
        key = (n.id, n.channel, n.attempt)
        for _ in range(MAX_DECISIONS):
            try:
                recorded = await self._record(n, outcome)
            except (ConcurrencyError, ConflictError):
                n = await self._reload(n.id)
                if n.status is not Status.DISPATCHING or (n.id, n.channel, n.attempt) != key:
                    self._unrecorded.pop(key, None)
                    return n  # answered already, or no longer wanted (cancelled, erased)
            except (StoreUnavailableError, psycopg.OperationalError) as exc:
                log.warning(
                    "could not record a provider's answer yet",
                    notification_id=str(n.id),
                    attempt=n.attempt,
                    error=str(exc),
                )
                await asyncio.sleep(1.0)
            else:
                self._unrecorded.pop(key, None)
                return recorded
        raise OutcomeNotRecordedError(f"attempt {n.attempt} of {n.id}: outcome kept for later")

    async def _append(self, n: Notification, events: list[NotificationEvent]) -> Notification:
        if events:
            await self._writer.append([StreamAppend(n.id, n.version, events)])
            count_notification_events(n.channel.value, n.priority.value, events)
            for event in events:
                n = notifications.evolve(n, event, n.id)
        return n

    async def _record(self, n: Notification, outcome: Outcome) -> Notification:
        now = datetime.now(UTC)
        if outcome.provider_message_id is not None:
            events = notifications.record_sent(
                n, provider_message_id=outcome.provider_message_id, at=now
            )
            n = await self._append(n, events)
            self.counts["sent"] += 1
            return n
        self.counts["failed"] += 1
        failed = notifications.record_failure(
            n, reason=outcome.reason, permanent=outcome.permanent, at=now
        )
        # The failure and its consequence (retry, fallback or dead letter) commit together.
        after = notifications.evolve(n, failed[0], n.id)
        step = next_step(
            after, self._policy, now=now, rng=self._rng, retry_after=outcome.retry_after
        )
        follow = step.events if isinstance(step, Record) else []
        return await self._append(n, [*failed, *follow])


def _attempt_span(n: Notification, provider: str) -> AbstractContextManager[Span]:
    """The attempt's span, in the trace of the request that asked for the notification;
    a no-op span when this process does not trace or that trace is not sampled."""
    parent = sampled_parent(n.traceparent) if tracing() else None
    if parent is None:
        return impersonal_span(INVALID_SPAN)
    attributes = {
        "herald.tenant": n.tenant_id,
        "herald.notification_id": str(n.id),
        "herald.channel": n.channel.value,
        "herald.provider": provider,
        "herald.attempt": n.attempt + 1,
    }
    if n.correlation_id:
        attributes["herald.correlation_id"] = n.correlation_id
    return impersonal_span(start_span("dispatch.attempt", parent=parent, attributes=attributes))
