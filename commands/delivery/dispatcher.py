"""The dispatcher role: due notifications become provider calls, and every attempt an event.

Two halves share one process:

- The consumer (a thread; a member of the Kafka consumer group `{ns}.dispatcher`) turns
  notification events into dispatch-queue rows, and copies each dead letter to
  `{ns}.notifications.dlq.v1`. It commits its offsets only after both are done.
- The workers (asyncio tasks) take due rows, most urgent first, and drive each
  notification from its event stream: start the attempt (DispatchStarted, appended at the
  version read, so two dispatchers can never both start one attempt), call the provider,
  and record the outcome with what follows from it (a retry, a fallback hop, a dead
  letter) in one append.

The provider is called only after DispatchStarted is committed. If a dispatcher dies
between the call and recording its outcome, the next one to take the row finds the
attempt started and, once it is old enough that its dispatcher must be gone, appends
DispatchResumed and repeats the call with the same dedupe key; docs/delivery.md
describes that window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import msgspec
import psycopg
import redis.asyncio
from confluent_kafka import Consumer, Message, Producer
from psycopg_pool import AsyncConnectionPool

from commands.delivery.queue import (
    Claimed,
    DispatchQueue,
    Effect,
    Release,
    apply_effects,
    effect_of,
)
from domain.errors import ConflictError
from domain.events import DomainEvent
from domain.notifications import notification as notifications
from domain.notifications.delivery import (
    PRIORITY_RANK,
    Done,
    Record,
    Resend,
    RetryPolicy,
    Send,
    WaitUntil,
    next_step,
)
from domain.notifications.events import (
    NotificationDeadLettered,
    NotificationEvent,
    NotificationRequested,
)
from domain.notifications.notification import Notification, Status
from domain.notifications.templates import RenderError, render
from domain.notifications.values import Channel, Priority
from infrastructure.delivery.protection import CircuitBreaker, PriorityLimiter
from infrastructure.delivery.providers import OutboundMessage, Provider, ProviderError
from infrastructure.delivery.templates import TemplateDirectory
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.reader import load_streams
from infrastructure.eventstore.store import ConcurrencyError
from infrastructure.eventstore.writer import GroupCommitWriter, StoreUnavailableError, StreamAppend
from infrastructure.kafka import (
    DISPATCHER_GROUP,
    Published,
    consumer_config,
    consumer_group,
    dead_letter_topic,
    decode_published,
    next_batch,
    notifications_topic,
)
from infrastructure.log import get_logger
from infrastructure.relay import producer_config
from infrastructure.resources import require_servers
from infrastructure.settings import Settings
from infrastructure.web.rate_limit import RateLimiter, Tier

log = get_logger(__name__)

CLAIM_BATCH = 100
IDLE_POLL_S = 0.25  # the longest a due row waits when no event woke the workers
SWEEP_EVERY_S = 30.0
ERROR_PAUSE_S = 5.0
SWEEP_AGE_S = 30.0
RECORD_MARGIN_S = 5.0  # past a call's budget, for its answer to be recorded
MAX_DECISIONS = 16  # per notification and turn: a stream that keeps moving is left for later
# Lanes: (name, most urgent rank it takes up to, notifications in flight). The urgent lane
# takes only critical and high, so however deep a backlog of low, they never wait for room.
LANES = (("urgent", PRIORITY_RANK[Priority.HIGH], 64), ("all", PRIORITY_RANK[Priority.LOW], 256))


class _DeadLetter(msgspec.Struct, frozen=True):
    """The message on the dead-letter topic: enough to act on without reading the log."""

    notification_id: str
    tenant_id: str
    reason: str
    position: int
    dead_lettered_at: datetime


class OutcomeNotRecordedError(Exception):
    """A provider's answer could not be recorded this turn; it is kept for the next."""


@dataclass
class _Outcome:
    provider_message_id: str | None = None
    reason: str = ""
    permanent: bool = False
    retry_after: timedelta | None = None


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        codec: EventCodec,
        providers: dict[Any, Provider],
    ) -> None:
        self._settings = settings
        self._codec = codec
        self._providers = providers
        self._database_url, self._redis_url, self._bootstrap = require_servers(settings)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        self._queue = DispatchQueue(worker, settings.dispatch_lease_s)
        # A provider call ends within its budget; DispatchStarted is appended only once the
        # call may go (its concurrency slot and rate token taken), so an attempt older than
        # the budget plus a margin for recording the answer has lost its dispatcher.
        self._call_budget_s = settings.provider_timeout_ms / 1000 + 5
        self._policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base=timedelta(milliseconds=settings.retry_base_ms),
            cap=timedelta(milliseconds=settings.retry_max_ms),
            resend_after=timedelta(
                seconds=max(settings.dispatch_lease_s, self._call_budget_s + RECORD_MARGIN_S)
            ),
        )
        self._templates = TemplateDirectory(settings.templates_path)
        self._rng = random.Random()  # noqa: S311 - jitter, not secrecy
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.counts: dict[str, int] = {"sent": 0, "failed": 0, "deferred": 0}
        self._held: set[UUID] = set()  # notifications this process is working on
        self._released: list[Release] = []  # rows handed back, written together
        self._release_due: asyncio.Event | None = None
        # Provider answers not yet recorded (the store was down): recorded on the next turn
        # instead of calling the provider again.
        self._unrecorded: dict[tuple[UUID, Channel, int], _Outcome] = {}
        # How long a stopping dispatcher waits for its calls: one call's whole budget.
        self._drain_s = self._call_budget_s + RECORD_MARGIN_S

    # --- the whole role -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        for channel, provider in self._providers.items():
            log.info(
                "provider ready",
                channel=str(channel),
                provider=provider.name,
                mode="sandbox" if provider.sandbox else "live",
            )
        asyncio.run(self._serve(stop))

    async def _serve(self, stop: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._release_due = asyncio.Event()
        consumer = threading.Thread(target=self._consume, args=(stop,), name="dispatch-consumer")
        consumer.start()
        pool = AsyncConnectionPool(self._database_url, min_size=2, max_size=8, open=False)
        await pool.open()
        # Hundreds of notifications in flight share a few connections, waiting their turn.
        client = redis.asyncio.Redis(
            connection_pool=redis.asyncio.BlockingConnectionPool.from_url(
                self._redis_url, max_connections=32, timeout=30
            )
        )
        writer = GroupCommitWriter(self._database_url, self._codec)
        await writer.start()
        concurrency = self._settings.concurrency_per_provider
        executor = ThreadPoolExecutor(max_workers=sum(concurrency.values()))
        work = _Work(
            pool=pool,
            writer=writer,
            breaker=CircuitBreaker(client, self._settings),
            rate=RateLimiter(client, prefix=f"{self._settings.namespace}:provider-rate"),
            limits={name: PriorityLimiter(n) for name, n in concurrency.items()},
            executor=executor,
        )
        lanes = [
            asyncio.create_task(self._lane(work, name, rank, room), name=f"lane-{name}")
            for name, rank, room in LANES
        ]
        lanes.append(asyncio.create_task(self._sweep(pool), name="sweep"))
        # Renewing leases and handing rows back go on until the lanes have drained.
        keepers = [
            asyncio.create_task(self._renew(), name="renew"),
            asyncio.create_task(self._write_releases(pool), name="release"),
        ]
        log.info("dispatcher started", worker=self._queue.worker)
        try:
            await asyncio.to_thread(stop.wait)
        finally:
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            for task in keepers:
                task.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
            await asyncio.to_thread(consumer.join)
            await writer.stop()
            executor.shutdown(wait=False, cancel_futures=True)
            for provider in self._providers.values():
                await asyncio.to_thread(provider.close)  # some SDKs run their own loop
            await client.aclose()
            await pool.close()
            log.info("dispatcher stopped", **self.counts)

    # --- consumer: events to queue rows -------------------------------------------------------

    def _consume(self, stop: threading.Event) -> None:
        topic = notifications_topic(self._settings.namespace)
        group = consumer_group(self._settings.namespace, DISPATCHER_GROUP)
        consumer = Consumer(consumer_config(self._bootstrap, group))
        producer = Producer(producer_config(self._bootstrap))
        consumer.subscribe([topic])
        try:
            with psycopg.connect(self._database_url, autocommit=True) as conn:
                while not stop.is_set():
                    messages = next_batch(consumer, 1000, timeout=0.2)
                    if messages:
                        self._consume_batch(conn, consumer, producer, messages)
        except Exception:
            log.exception("dispatch consumer failed; stopping")
            stop.set()
        finally:
            consumer.close()

    def _consume_batch(
        self,
        conn: psycopg.Connection[Any],
        consumer: Consumer,
        producer: Producer,
        messages: list[Message],
    ) -> None:
        effects: dict[UUID, tuple[int, Effect]] = {}
        dead: list[tuple[Published, NotificationDeadLettered, Any]] = []
        for message in messages:
            published = decode_published(message, self._codec)
            if published is None:
                continue
            event, stream_id, version = published.event, published.stream_id, published.version
            effect = effect_of(event)
            if effect is not None:
                seen = effects.get(stream_id)
                if seen is None or seen[0] < version:
                    effects[stream_id] = (version, effect)
            if isinstance(event, NotificationDeadLettered):
                dead.append((published, event, message.headers()))
        due_now = apply_effects(conn, effects) if effects else 0
        for published, event, headers in dead:
            letter = _DeadLetter(
                notification_id=str(published.stream_id),
                tenant_id=event.tenant_id,
                reason=event.reason,
                position=published.position,
                dead_lettered_at=event.at,
            )
            producer.produce(
                dead_letter_topic(self._settings.namespace),
                key=letter.notification_id,  # as on the notification topic
                value=msgspec.json.encode(letter),
                headers=headers,
            )
        if dead and producer.flush(30) > 0:
            raise RuntimeError("the broker did not take every dead letter")
        consumer.commit(asynchronous=False)
        if due_now and self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    # --- workers: queue rows to provider calls ------------------------------------------------

    async def _lane(self, work: _Work, name: str, max_rank: int, capacity: int) -> None:
        wake = self._wake
        if wake is None:
            raise RuntimeError("lanes run inside _serve")
        running: set[asyncio.Task[None]] = set()
        while True:
            try:
                room = capacity - len(running)
                if room <= 0:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                async with work.pool.connection() as conn:
                    async with conn.transaction():  # the claimed rows' locks go at once
                        claimed = await self._queue.claim(conn, max_rank, min(room, CLAIM_BATCH))
                    histories = await load_streams(
                        conn, self._codec, [c.notification_id for c in claimed]
                    )
                    idle = (
                        None if claimed else await self._queue.seconds_to_next_due(conn, max_rank)
                    )
                for item in claimed:
                    if item.notification_id in self._held:
                        # Its lease ran out while a task here still works on it: that task
                        # hands the row back; a second one would repeat its provider call.
                        continue
                    self._held.add(item.notification_id)
                    task = asyncio.create_task(
                        self._drive(work, item, histories.get(item.notification_id, []))
                    )
                    running.add(task)
                    task.add_done_callback(running.discard)
                if not claimed:
                    wake.clear()
                    wait = IDLE_POLL_S if idle is None else min(IDLE_POLL_S, max(idle, 0.005))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), wait)
            except asyncio.CancelledError:
                # Stopping: let calls in flight finish and be recorded (a call cut off here
                # would be repeated by whoever takes its row next), then give up on the rest.
                if running:
                    await asyncio.wait(running, timeout=self._drain_s)
                    for task in running:
                        task.cancel()
                    await asyncio.gather(*running, return_exceptions=True)
                raise
            except (psycopg.OperationalError, redis.RedisError) as exc:
                log.warning("dispatch lane waiting for servers", lane=name, error=str(exc))
                await asyncio.sleep(1.0)

    async def _sweep(self, pool: AsyncConnectionPool) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                async with pool.connection() as conn:
                    found = await self._queue.sweep(conn, SWEEP_AGE_S)
                if found:
                    log.warning("re-queued notifications the broker never announced", count=found)
            except psycopg.Error as exc:
                log.warning("dispatch sweep failed", error=str(exc))

    async def _renew(self) -> None:
        """Extend the leases of held rows, so a notification waiting for its provider's turn
        is never taken by a second worker while the first still holds it.

        The renewal has a connection of its own: queued behind the workers' releases in the
        pool, it could come too late on a busy machine.
        """
        every = self._settings.dispatch_lease_s / 3
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                await asyncio.sleep(every)
                held = list(self._held)
                if not held:
                    continue
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(
                            self._database_url, autocommit=True
                        )
                    await self._queue.renew(conn, held)
                except psycopg.Error as exc:
                    log.warning("could not renew dispatch leases", error=str(exc))
                    if conn is not None:
                        await conn.close()
                    conn = None
        finally:
            if conn is not None:
                await conn.close()

    async def _drive(self, work: _Work, item: Claimed, history: list[DomainEvent]) -> None:
        """Take one notification as far as it can go now, then hand its queue row back.

        The notification stays in `_held` (its lease renewed) until the row is handed back.
        """
        nid = item.notification_id
        try:
            release = await self._advance(work, item, history)
        except asyncio.CancelledError:
            self._held.discard(nid)
            raise
        except Exception:
            log.exception("dispatch failed", notification_id=str(nid))
            release = None
        if release is not None and self._release_due is not None:
            self._released.append(release)
            self._release_due.set()
            return
        try:
            async with work.pool.connection() as conn:
                # Keep the row a little longer, then try again from the stream, which holds
                # whatever this turn managed to record.
                await self._queue.hold(conn, nid, ERROR_PAUSE_S)
        except psycopg.Error as exc:
            # The lease runs out and another worker takes the row again.
            log.warning("could not hold a queue row", error=str(exc))
        finally:
            self._held.discard(nid)

    async def _write_releases(self, pool: AsyncConnectionPool) -> None:
        """Hand rows back in one statement per turn rather than one transaction per row.

        Until then a row keeps its lease, so no worker takes it early; rows that could not
        be handed back are taken again once their leases run out.
        """
        due = self._release_due
        if due is None:
            raise RuntimeError("releases are written inside _serve")
        try:
            while True:
                await due.wait()
                due.clear()
                await self._flush_releases(pool)
        finally:
            await asyncio.shield(self._flush_releases(pool))

    async def _flush_releases(self, pool: AsyncConnectionPool) -> None:
        # Taken off the list only once written: a flush cut short leaves them for the next.
        batch = list(self._released)
        if not batch:
            return
        try:
            async with pool.connection() as conn:
                await self._queue.release(conn, batch)
        except psycopg.Error as exc:
            # Their leases run out, and workers take the rows again.
            log.warning("could not hand queue rows back", count=len(batch), error=str(exc))
        del self._released[: len(batch)]
        for release in batch:
            self._held.discard(release.notification_id)

    async def _advance(self, work: _Work, item: Claimed, history: list[DomainEvent]) -> Release:
        nid = item.notification_id
        if not history:
            return Release(nid, 0, None, item.rank)
        requested = history[0]
        if not isinstance(requested, NotificationRequested):
            raise TypeError(f"stream {nid} does not start with NotificationRequested")
        n = notifications.replay(nid, history)
        rank = PRIORITY_RANK[n.priority]
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
                        n = await self._append(work, n, events)
                    case Resend() if (nid, n.channel, n.attempt) in self._unrecorded:
                        kept = self._unrecorded[(nid, n.channel, n.attempt)]
                        n = await self._settle(work, n, kept)
                    case Send() | Resend():
                        sent = await self._send(work, step, n, requested, rank)
                        if isinstance(sent, Release):
                            return sent
                        n = sent
            except (ConcurrencyError, ConflictError):
                # Another writer moved the stream (a cancel, an erasure, an operator's
                # retry): read it again and decide afresh.
                n = await self._reload(work, nid)
        return Release(nid, n.version, datetime.now(UTC), rank)

    async def _send(
        self,
        work: _Work,
        step: Send | Resend,
        n: Notification,
        requested: NotificationRequested,
        rank: int,
    ) -> Notification | Release:
        """Make the attempt and record its answer; a Release when the circuit says wait."""
        nid = n.id
        provider = self._providers[n.channel]
        admission = await work.breaker.admit(provider.name)
        if not admission.admitted:
            self.counts["deferred"] += 1
            later = datetime.now(UTC) + timedelta(seconds=max(admission.wait_s, 0.05))
            return Release(nid, n.version, later, rank)
        limiter = work.limits[provider.name]
        await limiter.acquire(rank)
        try:
            await self._within_rate(work, provider.name)
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
            n = await self._append(work, n, begin)
            outcome = await self._attempt(
                work, provider=provider, n=n, requested=requested, probe=admission.probe
            )
        finally:
            limiter.release()
        self._unrecorded[(nid, n.channel, n.attempt)] = outcome
        return await self._settle(work, n, outcome)

    async def _reload(self, work: _Work, nid: UUID) -> Notification:
        async with work.pool.connection() as conn:
            history = (await load_streams(conn, self._codec, [nid])).get(nid, [])
        return notifications.replay(nid, history)

    async def _settle(self, work: _Work, n: Notification, outcome: _Outcome) -> Notification:
        """Record the outcome of the attempt just made, however the stream moved meanwhile.

        An outcome in hand is never thrown away while its attempt is still open: deciding
        afresh from the stream would find the attempt unanswered and call the provider again.
        While the store is unreachable it keeps trying (the row stays held); should it give
        up, the outcome waits in `_unrecorded` for this notification's next turn.
        """
        key = (n.id, n.channel, n.attempt)
        for _ in range(MAX_DECISIONS):
            try:
                recorded = await self._record(work, n, outcome)
            except (ConcurrencyError, ConflictError):
                n = await self._reload(work, n.id)
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

    async def _append(
        self, work: _Work, n: Notification, events: list[NotificationEvent]
    ) -> Notification:
        if events:
            await work.writer.append([StreamAppend(n.id, n.version, events)])
            for event in events:
                n = notifications.evolve(n, event, n.id)
        return n

    async def _record(self, work: _Work, n: Notification, outcome: _Outcome) -> Notification:
        now = datetime.now(UTC)
        if outcome.provider_message_id is not None:
            events = notifications.record_sent(
                n, provider_message_id=outcome.provider_message_id, at=now
            )
            n = await self._append(work, n, events)
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
        return await self._append(work, n, [*failed, *follow])

    async def _attempt(
        self,
        work: _Work,
        *,
        provider: Provider,
        n: Notification,
        requested: NotificationRequested,
        probe: bool,
    ) -> _Outcome:
        """Render and call; the caller holds the provider's concurrency slot and rate token."""
        try:
            rendered = render(requested.content, self._templates)
        except RenderError as exc:
            await self._note(work, provider.name, "refused", probe=probe)
            return _Outcome(reason=str(exc), permanent=True)
        message = OutboundMessage(
            notification_id=n.id,
            attempt=n.attempt,
            tenant_id=n.tenant_id,
            channel=n.channel,
            recipient=n.recipient,
            subject=rendered.subject,
            body=rendered.body,
        )
        outcome, verdict = await self._call(work, provider, message)
        await self._note(work, provider.name, verdict, probe=probe)
        return outcome

    async def _note(
        self,
        work: _Work,
        provider: str,
        verdict: Literal["ok", "failed", "refused"],
        *,
        probe: bool,
    ) -> None:
        """Tell the breaker how a call went. Best effort: the answer in hand matters more."""
        try:
            await work.breaker.record(provider, verdict, probe=probe)
        except redis.RedisError as exc:
            log.warning("could not update the circuit breaker", provider=provider, error=str(exc))

    async def _within_rate(self, work: _Work, provider: str) -> None:
        tier = Tier(self._settings.rate_limit_per_provider[provider], 1)
        while True:
            decision = await work.rate.hit(provider, [tier])
            if decision.allowed:
                return
            await asyncio.sleep(min(max(decision.reset_s, 0.01), 1.0) * self._rng.random() + 0.01)

    async def _call(
        self, work: _Work, provider: Provider, message: OutboundMessage
    ) -> tuple[_Outcome, Literal["ok", "failed", "refused"]]:
        loop = asyncio.get_running_loop()
        budget_s = self._call_budget_s
        try:
            message_id = await asyncio.wait_for(
                loop.run_in_executor(work.executor, provider.send, message), budget_s
            )
        except ProviderError as exc:
            retry_after = (
                timedelta(seconds=exc.retry_after_s) if exc.retry_after_s is not None else None
            )
            outcome = _Outcome(reason=exc.reason, permanent=exc.permanent, retry_after=retry_after)
            return outcome, "refused" if exc.permanent else "failed"
        except TimeoutError:
            return _Outcome(reason=f"{provider.name}: no answer within {budget_s:.0f} s"), "failed"
        except Exception as exc:  # an SDK's own bug must cost one attempt, not the dispatcher
            log.exception("provider call raised", provider=provider.name)
            return _Outcome(reason=f"{provider.name}: {type(exc).__name__}"), "failed"
        return _Outcome(provider_message_id=message_id), "ok"


@dataclass(frozen=True)
class _Work:
    """What the workers share inside the event loop."""

    pool: AsyncConnectionPool
    writer: GroupCommitWriter
    breaker: CircuitBreaker
    rate: RateLimiter
    limits: dict[str, PriorityLimiter]
    executor: ThreadPoolExecutor
