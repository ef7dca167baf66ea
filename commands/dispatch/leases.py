"""The notifications a dispatcher process holds, and the leases that keep other dispatchers off.

A claimed row stays leased while a worker here works on it: the leases are renewed every
third of their length, and a row is handed back (a later due time, or dropped when nothing
is left to do) once its worker is done. Hand-backs are written together, one statement per
turn; until then a row keeps its lease, so no worker takes it early.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from commands.dispatch.queue import DispatchQueue, Release
from infrastructure.log import get_logger

log = get_logger(__name__)


class Leases:
    def __init__(self, queue: DispatchQueue, database_url: str, lease_s: int) -> None:
        self.queue = queue
        self._database_url = database_url
        self._lease_s = lease_s
        self._held: set[UUID] = set()  # notifications this process is working on
        self._released: list[Release] = []  # rows handed back, written together
        self._release_due = asyncio.Event()

    def holds(self, notification_id: UUID) -> bool:
        return notification_id in self._held

    def take(self, notification_id: UUID) -> None:
        self._held.add(notification_id)

    def forget(self, notification_id: UUID) -> None:
        """The worker let go without handing the row back: its lease runs out instead."""
        self._held.discard(notification_id)

    def hand_back(self, release: Release) -> None:
        """Queue the row's release; it stays held until written."""
        self._released.append(release)
        self._release_due.set()

    async def keep_for(
        self, pool: AsyncConnectionPool, notification_id: UUID, seconds: float
    ) -> None:
        """Keep the row a little longer, then let go: any worker may take it again after."""
        try:
            async with pool.connection() as conn:
                await self.queue.hold(conn, notification_id, seconds)
        except psycopg.Error as exc:
            # The lease runs out and another worker takes the row again.
            log.warning("could not hold a queue row", error=str(exc))
        finally:
            self._held.discard(notification_id)

    async def renew(self) -> None:
        """Extend the leases of held rows, so a notification waiting for its provider's turn
        is never taken by a second worker while the first still holds it.

        The renewal has a connection of its own: queued behind the workers' releases in the
        pool, it could come too late on a busy machine.
        """
        every = self._lease_s / 3
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
                    await self.queue.renew(conn, held)
                except psycopg.Error as exc:
                    log.warning("could not renew dispatch leases", error=str(exc))
                    if conn is not None:
                        await conn.close()
                    conn = None
        finally:
            if conn is not None:
                await conn.close()

    async def write_releases(self, pool: AsyncConnectionPool) -> None:
        """Hand rows back in one statement per turn rather than one transaction per row.

        Rows that could not be handed back are taken again once their leases run out.
        """
        try:
            while True:
                await self._release_due.wait()
                self._release_due.clear()
                await self._flush(pool)
        finally:
            await asyncio.shield(self._flush(pool))

    async def _flush(self, pool: AsyncConnectionPool) -> None:
        # Taken off the list only once written: a flush cut short leaves them for the next.
        batch = list(self._released)
        if not batch:
            return
        try:
            async with pool.connection() as conn:
                await self.queue.release(conn, batch)
        except psycopg.Error as exc:
            # Their leases run out, and workers take the rows again.
            log.warning("could not hand queue rows back", count=len(batch), error=str(exc))
        del self._released[: len(batch)]
        for release in batch:
            self._held.discard(release.notification_id)
