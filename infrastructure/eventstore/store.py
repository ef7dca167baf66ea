"""Appends and loads event streams through the eventsourcing library's PostgreSQL recorder.

The library gives the table layout, the table lock that keeps the global log gap-free for
followers, and optimistic concurrency through the (stream, version) primary key. Herald
adds the codec and one thing more: extra SQL statements that run in the same
transaction as the append, so a read model that must never lag its events (the users
table that enforces unique emails, for one) is written atomically with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from domain.events import DomainEvent
from infrastructure.eventstore import meta
from infrastructure.eventstore.codec import EventCodec

EVENTS_TABLE = "stored_events"
_STREAM_KEY = "stored_events_pkey"

Write = tuple[str, Sequence[Any]]
# The lock every append takes (the eventsourcing recorder's own): one appender at a time, so
# positions commit in order and followers of the log never skip one.
APPEND_LOCK = sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(EVENTS_TABLE))
NOTIFY_APPENDED = sql.SQL("NOTIFY {}").format(sql.Identifier(EVENTS_TABLE))


class ConcurrencyError(Exception):
    """Another writer appended to the stream first; reload and decide again."""


class ConstraintViolationError(Exception):
    """A write made with the append broke a database constraint; nothing was recorded."""

    def __init__(self, constraint: str) -> None:
        self.constraint = constraint
        super().__init__(f"constraint {constraint} refused the write")


@dataclass(frozen=True)
class Recorded:
    stream_id: UUID
    version: int
    event: DomainEvent


_STORE_META = (
    f"UPDATE {EVENTS_TABLE} SET meta = %s"  # noqa: S608 - the table name is ours
    " WHERE originator_id = %s AND originator_version = ANY(%s)"
)


class _Recorder(PostgresApplicationRecorder):
    def _insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # The library runs this inside a pipeline. A nested pipeline block syncs on exit, so
        # a constraint our writes break surfaces here as that IntegrityError, not later as
        # an unrelated "pipeline aborted" from the library's own statements.
        with curs.connection.pipeline():
            for statement, params in kwargs.get("writes", ()):
                curs.execute(statement, params)
        super()._insert_events(curs, stored_events, **kwargs)

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        about = kwargs.get("meta")
        if about is not None and stored_events:
            # The library's INSERT names its own columns; the metadata follows it in the
            # same transaction, so the events never exist without it.
            versions = [e.originator_version for e in stored_events]
            curs.execute(_STORE_META, (about, stored_events[0].originator_id, versions))
        return positions


def datastore_for(database_url: str, pool_size: int) -> PostgresDatastore:
    params = conninfo_to_dict(database_url)
    return PostgresDatastore(
        dbname=str(params.get("dbname", "postgres")),
        host=str(params.get("host", "127.0.0.1")),
        port=str(params.get("port", 5432)),
        user=str(params.get("user", "postgres")),
        password=str(params.get("password", "")),
        pool_size=pool_size,
        max_overflow=pool_size,
        pre_ping=True,
    )


class EventStore:
    def __init__(self, database_url: str, codec: EventCodec, pool_size: int = 4) -> None:
        self.codec = codec
        self._datastore = datastore_for(database_url, pool_size)
        self._recorder = _Recorder(self._datastore, events_table_name=EVENTS_TABLE)

    def append(
        self,
        stream_id: UUID,
        expected_version: int,
        events: Sequence[DomainEvent],
        *,
        writes: Sequence[Write] = (),
    ) -> list[int]:
        """Record `events` after version `expected_version`; return their global positions.

        Each event is stored with the metadata bound when this is called (see `meta`)."""
        about, encoded = self.codec.encode_all([(stream_id, e) for e in events], meta.current())
        stored = [
            StoredEvent(stream_id, expected_version + offset, topic, state)
            for offset, (topic, state) in enumerate(encoded, start=1)
        ]
        try:
            positions = self._recorder.insert_events(stored, writes=writes, meta=about)
        except IntegrityError as exc:
            cause = exc.__cause__
            constraint = cause.diag.constraint_name if isinstance(cause, psycopg.Error) else None
            if constraint == _STREAM_KEY or constraint is None:
                raise ConcurrencyError(f"stream {stream_id} moved past {expected_version}") from exc
            raise ConstraintViolationError(constraint) from exc
        return list(positions or [])

    def load(self, stream_id: UUID) -> list[Recorded]:
        stored = self._recorder.select_events(stream_id)
        events = self.codec.decode_many([(s.topic, s.state) for s in stored])
        return [
            Recorded(stream_id, s.originator_version, event)
            for s, event in zip(stored, events, strict=True)
        ]

    def close(self) -> None:
        self._datastore.close()
