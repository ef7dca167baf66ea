"""The dispatcher role's workers: due notifications become provider calls, every attempt an event.

Workers (asyncio tasks, in two lanes by urgency) take due rows of the dispatch queue under
a lease and drive each notification from its event stream (`driver.py`). The queue itself
is kept by the dispatch-queue projection (projections/dispatch_queue/), which runs beside
the workers in the same role and wakes them when something becomes due.

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
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import psycopg
import redis.asyncio
from psycopg_pool import AsyncConnectionPool

from commands.dispatch.calls import ProviderCalls
from commands.dispatch.driver import Driver
from commands.dispatch.leases import Leases
from commands.dispatch.queue import Claimed, DispatchQueue
from domain.events import DomainEvent
from domain.notifications.dispatch_policy import PRIORITY_RANK, RetryPolicy
from domain.notifications.values import Channel, Priority
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.reader import load_streams
from infrastructure.eventstore.writer import GroupCommitWriter
from infrastructure.log import get_logger
from infrastructure.providers.protection import CircuitBreaker
from infrastructure.providers.provider import Provider
from infrastructure.rate_limit import RateLimiter
from infrastructure.settings import Settings, require_servers
from infrastructure.template_files import TemplateDirectory

log = get_logger(__name__)

CLAIM_BATCH = 100
IDLE_POLL_S = 0.25  # the longest a due row waits when no event woke the workers
ERROR_PAUSE_S = 5.0
RECORD_MARGIN_S = 5.0  # past a call's budget, for its answer to be recorded
# Lanes: (name, most urgent rank it takes up to, notifications in flight). The urgent lane
# takes only critical and high, so however deep a backlog of low, they never wait for room.
LANES = (("urgent", PRIORITY_RANK[Priority.HIGH], 64), ("all", PRIORITY_RANK[Priority.LOW], 256))


@dataclass(frozen=True)
class _Workers:
    """What the lanes and their tasks share inside the event loop."""

    pool: AsyncConnectionPool
    driver: Driver
    leases: Leases


class Dispatcher:
    def __init__(
        self, settings: Settings, codec: EventCodec, providers: dict[Channel, Provider]
    ) -> None:
        self._settings = settings
        self._codec = codec
        self._providers = providers
        self._database_url, self._redis_url, _ = require_servers(settings)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        self._queue = DispatchQueue(worker, settings.dispatch_lease_s)
        self._sweep_s = float(settings.dispatch_sweep_s)
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        # How long a stopping dispatcher waits for its calls: one call's whole budget.
        self._drain_s = self._call_budget_s + RECORD_MARGIN_S
        self.counts: dict[str, int] = {}

    def wake(self) -> None:
        """Something became due now: let idle lanes look at once. Safe from any thread."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

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
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
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
        settings = self._settings
        concurrency = settings.concurrency_per_provider
        executor = ThreadPoolExecutor(max_workers=sum(concurrency.values()))
        calls = ProviderCalls(
            breaker=CircuitBreaker(client, settings),
            rate=RateLimiter(client, prefix=f"{settings.namespace}:provider-rate"),
            rates_per_s=settings.rate_limit_per_provider,
            concurrency=concurrency,
            executor=executor,
            templates=TemplateDirectory(settings.templates_path),
            budget_s=self._call_budget_s,
        )
        driver = Driver(
            providers=self._providers,
            calls=calls,
            policy=self._policy,
            writer=writer,
            pool=pool,
            codec=self._codec,
        )
        self.counts = driver.counts
        leases = Leases(self._queue, self._database_url, settings.dispatch_lease_s)
        workers = _Workers(pool, driver, leases)
        lanes = [
            asyncio.create_task(self._lane(workers, *lane), name=f"lane-{lane[0]}")
            for lane in LANES
        ]
        lanes.append(asyncio.create_task(self._sweep(pool), name="sweep"))
        # Renewing leases and handing rows back go on until the lanes have drained.
        keepers = [
            asyncio.create_task(leases.renew(), name="renew"),
            asyncio.create_task(leases.write_releases(pool), name="release"),
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
            await writer.stop()
            executor.shutdown(wait=False, cancel_futures=True)
            for provider in self._providers.values():
                await asyncio.to_thread(provider.close)  # some SDKs run their own loop
            await client.aclose()
            await pool.close()
            log.info("dispatcher stopped", **self.counts)

    async def _lane(self, workers: _Workers, name: str, max_rank: int, capacity: int) -> None:
        wake, leases = self._wake, workers.leases
        if wake is None:
            raise RuntimeError("lanes run inside _serve")
        running: set[asyncio.Task[None]] = set()
        while True:
            try:
                room = capacity - len(running)
                if room <= 0:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                async with workers.pool.connection() as conn:
                    async with conn.transaction():  # the claimed rows' locks go at once
                        claimed = await self._queue.claim(conn, max_rank, min(room, CLAIM_BATCH))
                    histories = await load_streams(
                        conn, self._codec, [c.notification_id for c in claimed]
                    )
                    idle = (
                        None if claimed else await self._queue.seconds_to_next_due(conn, max_rank)
                    )
                for item in claimed:
                    if leases.holds(item.notification_id):
                        # Its lease ran out while a task here still works on it: that task
                        # hands the row back; a second one would repeat its provider call.
                        continue
                    leases.take(item.notification_id)
                    history = histories.get(item.notification_id, [])
                    task = asyncio.create_task(self._drive(workers, item, history))
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

    async def _drive(self, workers: _Workers, item: Claimed, history: list[DomainEvent]) -> None:
        """Take one notification as far as it can go now, then hand its queue row back.

        The notification stays held (its lease renewed) until the row is handed back.
        """
        nid = item.notification_id
        try:
            release = await workers.driver.advance(item, history)
        except asyncio.CancelledError:
            workers.leases.forget(nid)
            raise
        except (psycopg.OperationalError, redis.RedisError) as exc:
            # A server is out, and every notification in flight meets it: a line, no traceback.
            log.warning("dispatch waiting for servers", notification_id=str(nid), error=str(exc))
        except Exception:
            log.exception("dispatch failed", notification_id=str(nid))
        else:
            workers.leases.hand_back(release)
            return
        # Keep the row a little longer, then try again from the stream, which holds
        # whatever this turn managed to record.
        await workers.leases.keep_for(workers.pool, nid, ERROR_PAUSE_S)

    async def _sweep(self, pool: AsyncConnectionPool) -> None:
        while True:
            await asyncio.sleep(self._sweep_s)
            try:
                async with pool.connection() as conn:
                    found = await self._queue.sweep(conn, self._sweep_s)
                if found:
                    log.warning("re-queued notifications the broker never announced", count=found)
            except psycopg.Error as exc:
                log.warning("dispatch sweep failed", error=str(exc))
