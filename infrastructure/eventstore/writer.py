"""Group commit: concurrent appends share one transaction.

Each API process runs one writer task with its own connection. Callers queue a unit (the
events of one command, or of a whole batch request) and await its positions. The writer
takes whatever is queued, up to `max_units` (waiting `linger` for company only when it
holds a single unit), and commits it in one transaction under the same table lock the
eventsourcing library's recorder takes, so followers of the global log never skip a
position. Small commits are one statement (`herald_append_events`, or
`herald_append_sealed_events` with new data keys); large ones, and those that record
idempotency keys, use binary COPY in an explicit transaction. A success means
the events are committed. If the shared transaction fails, the units are written again one
by one under savepoints, so a failing command fails alone and its neighbours still commit.

Sealed events may be sealed under data keys the codec made for them (`made_keys.py`): their
rows are written by COPY in the same transaction as the events, so a key is stored exactly
when some event sealed under it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from opentelemetry.trace import Span
from psycopg import sql

from domain.events import DomainEvent
from infrastructure.eventstore import meta
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import (
    APPEND_LOCK,
    EVENTS_TABLE,
    NOTIFY_APPENDED,
    ConcurrencyError,
    ConstraintViolationError,
)
from infrastructure.log import get_logger
from infrastructure.metrics import APPEND_CONFLICTS, APPEND_DURATION, COMMIT_UNITS
from infrastructure.privacy.keyring import KeysNotCachedError, copy_rows
from infrastructure.privacy.made_keys import KeyRow
from infrastructure.tracing import in_recorded_span, shared_span, start_span, untraced

log = get_logger(__name__)

_STREAM_KEY = "stored_events_pkey"
_IDEMPOTENCY_KEY = "idempotency_keys_pkey"
_COPY = sql.SQL(
    "COPY {} (originator_id, originator_version, topic, state, meta) FROM STDIN (FORMAT BINARY)"
).format(sql.Identifier(EVENTS_TABLE))
_LAST_POSITION = sql.SQL("SELECT currval(pg_get_serial_sequence({}, 'notification_id'))").format(
    sql.Literal(EVENTS_TABLE)
)
_APPEND = "SELECT * FROM herald_append_events(%s, %s, %s, %s, %s)"
_APPEND_SEALED = (
    "SELECT * FROM herald_append_sealed_events(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# Up to this many rows a commit is one statement; above it, COPY moves rows faster
# (measured: for 1,000-row units the array statement took twice as long per row).
ONE_STATEMENT_ROWS = 256
_REMEMBER = (
    "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status_code, response)"
    " VALUES (%s, %s, %s, %s, %s)"
)

Row = tuple[UUID, int, str, bytes, bytes | None]  # stream, version, topic, state, meta


class StoreUnavailableError(Exception):
    """The event store could not be reached; nothing of the unit was recorded."""


class IdempotencyKeyTakenError(Exception):
    """Another request with the same idempotency key committed first."""


@dataclass(frozen=True)
class Idempotency:
    """Remember a command's response under its key, in the command's own transaction."""

    tenant_id: str
    key: str
    request_hash: bytes
    status_code: int
    response: Callable[[list[int]], bytes]  # built from the positions the events got


@dataclass(frozen=True)
class StreamAppend:
    stream_id: UUID
    expected_version: int
    events: Sequence[DomainEvent]


@dataclass
class _Unit:
    rows: list[Row]
    idempotency: Idempotency | None
    keys: set[bytes]  # ids of data keys sealing these rows that were made and maybe not stored
    done: asyncio.Future[list[int]] = field(repr=False)
    span: Span | None = None  # the caller's wait for the commit, when traced


class GroupCommitWriter:
    def __init__(
        self,
        database_url: str,
        codec: EventCodec,
        *,
        max_units: int = 512,
        linger_s: float = 0.002,
    ) -> None:
        self._url = database_url
        self._codec = codec
        self._max_units = max_units
        self._linger_s = linger_s
        self._queue: asyncio.Queue[_Unit] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()

    async def append(
        self, appends: Sequence[StreamAppend], idempotency: Idempotency | None = None
    ) -> list[int]:
        """Commit all `appends` together (all or nothing); returns their events' positions.

        Each event is stored with the metadata bound when this is called (see `meta`)."""
        queued = time.perf_counter()
        bound = meta.current()
        keys: set[bytes] = set()
        try:
            rows = self._rows(appends, bound, keys)
        except KeysNotCachedError:
            # A tenant new to this process, or keys due to be checked: one round trip.
            pairs = [(a.stream_id, event) for a in appends for event in a.events]
            await asyncio.to_thread(self._codec.prepare_keys, pairs, bound)
            rows = self._rows(appends, bound, keys)
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        span = start_span("eventstore.append", parent=None) if in_recorded_span() else None
        self._queue.put_nowait(_Unit(rows, idempotency, keys, done, span))
        try:
            return await done
        except ConcurrencyError:
            APPEND_CONFLICTS.inc()
            raise
        finally:
            APPEND_DURATION.observe(time.perf_counter() - queued)
            if span is not None:
                span.set_attribute("herald.events", len(rows))
                span.end()

    def _rows(
        self, appends: Sequence[StreamAppend], bound: meta.EventMeta | None, keys: set[bytes]
    ) -> list[Row]:
        pairs = [(append.stream_id, event) for append in appends for event in append.events]
        about = self._codec.encode_meta(bound, pairs, keys)
        encode = self._codec.encode
        rows: list[Row] = []
        for append in appends:
            for offset, event in enumerate(append.events, start=1):
                topic, state = encode(event, append.stream_id, keys)
                rows.append(
                    (append.stream_id, append.expected_version + offset, topic, state, about)
                )
        return rows

    async def _run(self) -> None:
        while True:
            units = [await self._queue.get()]
            self._drain(units)
            if len(units) == 1 and self._linger_s > 0:
                # Under load, the previous commit's duration already gathered company.
                # A lone unit may be the first of a burst: wait once, briefly, for more.
                await asyncio.sleep(self._linger_s)
                self._drain(units)
            COMMIT_UNITS.observe(len(units))
            waits = [unit.span for unit in units if unit.span is not None]
            if waits:  # in the first traced request's trace, linked both ways to each one's
                events = sum(len(unit.rows) for unit in units)
                about = {"herald.units": len(units), "herald.events": events}
                with shared_span("eventstore.group_commit", waits, about):
                    await self._commit(units)
            else:  # no caller is traced: the commit's queries make no spans either
                with untraced():
                    await self._commit(units)

    def _drain(self, units: list[_Unit]) -> None:
        while len(units) < self._max_units and not self._queue.empty():
            units.append(self._queue.get_nowait())

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            # Autocommit: a single statement is its own transaction; longer work opens one
            # explicitly with conn.transaction().
            self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        return self._conn

    async def _commit(self, units: list[_Unit]) -> None:
        try:
            conn = await self._connection()
            try:
                positions = await self._commit_together(conn, units)
            except psycopg.IntegrityError:
                await self._commit_one_by_one(conn, units)
                return
        except psycopg.OperationalError as exc:
            log.warning("event store unavailable", error=str(exc))
            self._conn = None
            for unit in units:
                _fail(unit, StoreUnavailableError("the event store is unavailable"))
            return
        except Exception as exc:  # the writer must outlive any one batch
            log.exception("group commit failed")
            for unit in units:
                _fail(unit, exc)
            return
        start = 0
        for unit in units:
            _resolve(unit, positions[start : start + len(unit.rows)])
            start += len(unit.rows)

    async def _commit_together(
        self, conn: psycopg.AsyncConnection[Any], units: list[_Unit]
    ) -> list[int]:
        rows = [row for u in units for row in u.rows]
        keys = await self._claim({key for u in units for key in u.keys})
        stored = False
        try:
            if len(rows) <= ONE_STATEMENT_ROWS and all(u.idempotency is None for u in units):
                positions = await self._append_in_one_statement(conn, rows, keys)
                stored = True
                return positions
            async with conn.transaction():
                if keys:
                    await copy_rows(conn, keys)
                await conn.execute(APPEND_LOCK)
                positions = await self._copy(conn, rows)
                start = 0
                for unit in units:
                    await self._remember(conn, unit, positions[start : start + len(unit.rows)])
                    start += len(unit.rows)
                await conn.execute(NOTIFY_APPENDED)
            stored = True
            return positions
        finally:
            self._settle(keys, stored)

    async def _claim(self, unstored: set[bytes]) -> list[KeyRow]:
        """The rows of keys made for these events and not stored yet, to store with them;
        when another transaction is writing some of them, after it ends."""
        made = self._codec.made_keys
        if made is None or not unstored:
            return []
        while True:
            rows, busy = made.claim(unstored)
            if not busy:
                return rows
            made.settle(rows, stored=False)
            await asyncio.sleep(0.001)

    def _settle(self, rows: list[KeyRow], stored: bool) -> None:
        made = self._codec.made_keys
        if made is not None and rows:
            made.settle(rows, stored)

    async def _commit_one_by_one(
        self, conn: psycopg.AsyncConnection[Any], units: list[_Unit]
    ) -> None:
        outcomes: list[tuple[_Unit, list[int] | Exception]] = []
        written: list[KeyRow] = []  # stored when the transaction commits
        writing: set[bytes] = set()  # their ids
        committed = False
        try:
            async with conn.transaction():
                await conn.execute(APPEND_LOCK)
                for unit in units:
                    # Keys an earlier unit of this transaction writes are this unit's too.
                    keys = await self._claim(unit.keys - writing)
                    try:
                        async with conn.transaction():  # a savepoint
                            if keys:
                                await copy_rows(conn, keys)
                            positions = await self._copy(conn, unit.rows)
                            await self._remember(conn, unit, positions)
                        outcomes.append((unit, positions))
                        written += keys
                        writing.update(row.raw_id for row in keys)
                    except psycopg.IntegrityError as exc:
                        # Left for the next unit sealed under them.
                        self._settle(keys, stored=False)
                        outcomes.append((unit, _integrity_error(exc)))
                await conn.execute(NOTIFY_APPENDED)
            committed = True
        finally:
            self._settle(written, committed)
        for unit, outcome in outcomes:
            if isinstance(outcome, Exception):
                _fail(unit, outcome)
            else:
                _resolve(unit, outcome)

    @staticmethod
    async def _append_in_one_statement(
        conn: psycopg.AsyncConnection[Any], rows: list[Row], keys: list[KeyRow]
    ) -> list[int]:
        # In a busy event loop every await resumes late, so a commit of many round trips
        # (lock, copy, sequence, notify, commit) is slow however fast each one is. One
        # statement in autocommit mode is the whole transaction: one round trip.
        columns = (
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
        )
        if keys:
            key_columns = tuple(list(column) for column in zip(*keys, strict=True))
            cursor = await conn.execute(_APPEND_SEALED, columns + key_columns, binary=True)
        else:
            cursor = await conn.execute(_APPEND, columns, binary=True)
        recorded = {(stream, version): position async for stream, version, position in cursor}
        return [recorded[(row[0], row[1])] for row in rows]

    @staticmethod
    async def _copy(conn: psycopg.AsyncConnection[Any], rows: list[Row]) -> list[int]:
        if not rows:
            return []
        async with conn.cursor() as cursor:
            async with cursor.copy(_COPY) as copy:
                copy.set_types(["uuid", "int8", "text", "bytea", "bytea"])
                for row in rows:
                    await copy.write_row(row)
            await cursor.execute(_LAST_POSITION)
            fetched = await cursor.fetchone()
        if fetched is None:
            raise RuntimeError("the sequence returned no value")
        # The table lock admits one inserter at a time, so this transaction's rows took
        # consecutive values of the sequence, in COPY order.
        last = int(fetched[0])
        return list(range(last - len(rows) + 1, last + 1))

    @staticmethod
    async def _remember(
        conn: psycopg.AsyncConnection[Any], unit: _Unit, positions: list[int]
    ) -> None:
        record = unit.idempotency
        if record is not None:
            await conn.execute(
                _REMEMBER,
                (
                    record.tenant_id,
                    record.key,
                    record.request_hash,
                    record.status_code,
                    record.response(positions),
                ),
            )


def _integrity_error(exc: psycopg.IntegrityError) -> Exception:
    constraint = exc.diag.constraint_name
    if constraint == _STREAM_KEY:
        return ConcurrencyError("the stream moved on; reload and decide again")
    if constraint == _IDEMPOTENCY_KEY:
        return IdempotencyKeyTakenError("the idempotency key was used concurrently")
    return ConstraintViolationError(constraint or "unknown")


def _resolve(unit: _Unit, positions: list[int]) -> None:
    if not unit.done.done():
        unit.done.set_result(positions)


def _fail(unit: _Unit, exc: Exception) -> None:
    if not unit.done.done():
        unit.done.set_exception(exc)
