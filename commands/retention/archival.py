"""Archival: notifications past their tenant's retention leave the read models for archive
files, and their events leave the event store once the events' retention has passed too.

For each tenant, as of one time `now` (a scheduler's tick, or one given by hand):

1. Its final notifications requested and last changed before the notifications cutoff are
   read from the read model, a tenant-day at a time, and written to a Parquet file with its
   manifest (under a partial name).
2. In one transaction, each gets a `NotificationArchived` event, appended only while its
   stream is still at the version its row showed (so the row's final status is the
   stream's), with the file's catalog row. If a stream moved meanwhile, the transaction is
   undone and the file written again without it. Then the file is moved into place.
3. The notifications projection applies those events: the rows leave every read model, in
   SQL and in Redis, and `archived_notifications` records where each went.
4. Archived notifications requested before the events cutoff, whose archival every
   follower of the log has seen, lose their events (`event_removal.py`).
5. `ArchiveRunCompleted` records the run for the tenant, with its `archive_runs` row.

Every step is idempotent: a run repeated for the same time finds nothing left to do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import psycopg
import pyarrow as pa
from uuid_utils.compat import uuid7

from commands.retention.event_removal import followers_position, remove_archived_events
from domain.notifications.notification import Status, archive
from domain.retention import ArchiveRunCompleted, Cutoffs, RetentionPolicy, cutoffs
from infrastructure.archives.files import ArchiveFiles, Manifest
from infrastructure.archives.layout import (
    ATTEMPT_FIELDS,
    NOTIFICATION_FIELDS,
    NOTIFICATIONS,
    archive_path,
)
from infrastructure.eventstore import meta
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.conditional import NextEvent, append_unless_moved
from infrastructure.log import get_logger

log = get_logger(__name__)

FILE_ROWS = 50_000  # the most notifications one file (and the job's memory) holds at once
FINAL = ("sent", "delivered", "opened", "dead_lettered", "cancelled")
_RUNS = uuid.UUID("3f0a8d55-2c7e-4d59-b3a4-1e9c6b7d0f21")

_FIELDS = [name for name in NOTIFICATION_FIELDS if name != "attempt_log"]
# Written out so that PostgreSQL can use notification_view_retention_idx, whose predicate
# names the same statuses.
_CANDIDATES = (
    "SELECT notification_id::text, "  # noqa: S608 - constant column list
    + ", ".join(_FIELDS[1:])
    + " FROM notification_view WHERE tenant_id = %(tenant)s AND requested_at < %(cutoff)s"
    " AND updated_at < %(cutoff)s AND status IN ("
    + ", ".join(f"'{status}'" for status in FINAL)
    + ") ORDER BY requested_at, notification_id"
)
_COUNT = "SELECT count(*) FROM (" + _CANDIDATES + ") c"  # noqa: S608
_ATTEMPTS = (
    "SELECT notification_id::text, "  # noqa: S608 - constant column list
    + ", ".join(ATTEMPT_FIELDS)
    + " FROM notification_attempts WHERE notification_id = ANY(%s::uuid[])"
    " ORDER BY notification_id, attempt"
)
_TENANTS = (
    "SELECT tenant_id FROM notification_stats"
    " UNION SELECT tenant_id FROM archived_notifications"
    " WHERE NOT events_removed AND restored_position IS NULL"
)
_POLICIES = "SELECT tenant_id, notifications_days, events_days FROM retention_policies"
_CATALOG = (
    "INSERT INTO archives (path, tenant_id, day, run_id, rows, bytes, sha256, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_UNFINISHED = "SELECT path FROM archives WHERE path = ANY(%s)"
_RUN_ROW = (
    "INSERT INTO archive_runs (run_id, tenant_id, at, finished_at, archived, files, bytes,"
    " events_removed, requested_by) VALUES (%s, %s, %s, now(), %s, %s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING"
)

Progress = Callable[[int, int], None]  # (notifications done, notifications to do)
PHASES = ("read", "write", "append", "await", "remove")


def quiet(_done: int, _total: int) -> None:
    return None


@dataclass
class TenantRun:
    """What a run did for one tenant."""

    tenant_id: str
    cutoffs: Cutoffs
    candidates: int = 0
    archived: int = 0
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    events_removed: int = 0
    last_position: int = 0
    # Where the time went: reading rows, writing files, appending events, waiting for the
    # followers of the log, removing events.
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started


@dataclass(frozen=True)
class Archival:
    """The collaborators of archival, wired once by the composition root."""

    database_url: str
    codec: EventCodec
    files: ArchiveFiles
    default_retention: RetentionPolicy
    wait_for_followers_s: float = 120.0

    def run(
        self,
        *,
        now: datetime,
        run_id: UUID,
        tenant: str | None = None,
        requested_by: str | None = None,
        dry_run: bool = False,
        progress: Progress = quiet,
    ) -> list[TenantRun]:
        """Archive what is past retention as of `now`, for `tenant` or every tenant."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            self.finish_interrupted(conn)
            runs = [TenantRun(t, cutoffs(p, now)) for t, p in self._policies(conn, tenant)]
            for tenant_run in runs:
                row = conn.execute(
                    _COUNT,
                    {"tenant": tenant_run.tenant_id, "cutoff": tenant_run.cutoffs.notifications},
                ).fetchone()
                tenant_run.candidates = int(row[0]) if row else 0
            if dry_run:
                return runs
            total, done = sum(r.candidates for r in runs), 0
            for tenant_run in runs:
                about = meta.EventMeta(
                    actor=requested_by or "scheduler",
                    actor_kind="user" if requested_by else "job",
                    tenant=tenant_run.tenant_id,
                    command="ArchivePastRetention",
                    command_id=f"{run_id}:{tenant_run.tenant_id}",
                )
                with meta.bound(about):
                    for archived in self._archive_tenant(conn, tenant_run, now, run_id):
                        done += archived
                        progress(done, max(total, done))
                    with tenant_run.timed("await"):
                        self._await_followers(conn, tenant_run.last_position)
                    with tenant_run.timed("remove"):
                        tenant_run.events_removed = remove_archived_events(
                            conn, tenant_run.tenant_id, tenant_run.cutoffs.events
                        )
                    self._record(conn, tenant_run, now, run_id, requested_by)
            progress(done, max(total, done))
        return runs

    def finish_interrupted(self, conn: psycopg.Connection[Any]) -> None:
        """Complete what a run that died left: files it committed are moved into place,
        files it did not commit are removed."""
        pending = self.files.partials()
        if not pending:
            return
        committed = {row[0] for row in conn.execute(_UNFINISHED, (pending,)).fetchall()}
        for path in pending:
            if path in committed:
                self.files.finish(path)
            else:
                self.files.discard(path)
        log.info(
            "finished an interrupted archival",
            moved=len(committed),
            removed=len(pending) - len(committed),
        )

    def _policies(
        self, conn: psycopg.Connection[Any], tenant: str | None
    ) -> list[tuple[str, RetentionPolicy]]:
        chosen = {
            row[0]: RetentionPolicy(notifications_days=row[1], events_days=row[2])
            for row in conn.execute(_POLICIES).fetchall()
        }
        tenants = [tenant] if tenant is not None else sorted(r[0] for r in conn.execute(_TENANTS))
        return [(t, chosen.get(t, self.default_retention)) for t in tenants]

    def _archive_tenant(
        self, conn: psycopg.Connection[Any], run: TenantRun, now: datetime, run_id: UUID
    ) -> Iterator[int]:
        """Archive the tenant's candidates a file at a time; yields how many each file took."""
        if run.candidates == 0:
            return
        with psycopg.connect(self.database_url) as reader:
            params = {"tenant": run.tenant_id, "cutoff": run.cutoffs.notifications}
            with reader.cursor(name="herald_archival") as cursor:
                cursor.itersize = 10_000
                cursor.execute(_CANDIDATES, params)
                days = _by_day(cursor)
                while True:
                    with run.timed("read"):
                        day, found = next(days, (None, []))
                        rows = _with_attempts(reader, found) if found else []
                    if day is None:
                        return
                    manifest, positions = self._archive_file(
                        conn, rows, run=run, day=day, now=now, run_id=run_id
                    )
                    if manifest is not None:
                        run.archived += manifest.rows
                        run.files.append(manifest.path)
                        run.bytes += manifest.bytes
                        run.last_position = max(run.last_position, *positions)
                    yield len(rows)

    def _archive_file(
        self,
        conn: psycopg.Connection[Any],
        rows: list[dict[str, Any]],
        *,
        run: TenantRun,
        day: date,
        now: datetime,
        run_id: UUID,
    ) -> tuple[Manifest | None, list[int]]:
        """Write `rows` to a new file of the tenant-day and archive them; rows whose streams
        moved on are left out. Returns the manifest and the events' positions."""
        tenant = run.tenant_id
        path = archive_path(tenant, day, uuid7())
        while rows:
            with run.timed("write"):
                table = pa.Table.from_pylist(rows, schema=NOTIFICATIONS)
                manifest = self.files.write_partial(
                    path, table, tenant_id=tenant, day=day, run_id=run_id, created_at=now
                )
            appends = [
                NextEvent(
                    UUID(row["notification_id"]),
                    row["version"] + 1,
                    archive(
                        tenant_id=tenant, status=Status(row["status"]), archive_path=path, at=now
                    ),
                )
                for row in rows
            ]
            catalog = (path, tenant, day, run_id, manifest.rows, manifest.bytes, manifest.sha256)
            with run.timed("append"), conn.transaction():
                appended = append_unless_moved(conn, self.codec, appends)
                if len(appended) != len(rows):
                    # Some moved on since their rows were read: undo, and leave them out.
                    raise psycopg.Rollback
                conn.execute(_CATALOG, (*catalog, now))
            if len(appended) == len(rows):
                self.files.finish(path)
                return manifest, list(appended.values())
            self.files.discard(path)
            log.info(
                "notifications moved on while being archived", left_out=len(rows) - len(appended)
            )
            rows = [row for row in rows if UUID(row["notification_id"]) in appended]
        return None, []

    def _await_followers(self, conn: psycopg.Connection[Any], position: int) -> None:
        """Give the relay and the projections time to see this run's archival, so that its
        events can go in the same run; what they have not seen goes in a later one."""
        deadline = time.monotonic() + self.wait_for_followers_s
        while position and followers_position(conn) < position:
            if time.monotonic() > deadline:
                log.warning("followers of the log are behind; events stay until the next run")
                return
            time.sleep(0.2)

    def _record(
        self,
        conn: psycopg.Connection[Any],
        run: TenantRun,
        now: datetime,
        run_id: UUID,
        requested_by: str | None,
    ) -> None:
        event = ArchiveRunCompleted(
            at=now,
            tenant_id=run.tenant_id,
            run_id=run_id,
            as_of=now,
            archived=run.archived,
            files=tuple(run.files),
            bytes=run.bytes,
            events_removed=run.events_removed,
            requested_by=requested_by,
        )
        stream = uuid.uuid5(_RUNS, f"{run_id}:{run.tenant_id}")
        with conn.transaction():
            if append_unless_moved(conn, self.codec, [NextEvent(stream, 1, event)]):
                conn.execute(
                    _RUN_ROW,
                    (
                        run_id,
                        run.tenant_id,
                        now,
                        run.archived,
                        len(run.files),
                        run.bytes,
                        run.events_removed,
                        requested_by,
                    ),
                )


def _by_day(cursor: psycopg.Cursor[Any]) -> Iterator[tuple[date, list[dict[str, Any]]]]:
    """Rows (in order of request time) grouped by the day they were requested, at most
    FILE_ROWS at a time."""
    names = [column.name for column in cursor.description or ()]
    day: date | None = None
    rows: list[dict[str, Any]] = []
    for values in cursor:
        row = dict(zip(names, values, strict=True))
        row_day = row["requested_at"].astimezone(UTC).date()
        if rows and (row_day != day or len(rows) >= FILE_ROWS):
            assert day is not None  # noqa: S101 - set with the first row
            yield day, rows
            rows = []
        day = row_day
        rows.append(row)
    if rows and day is not None:
        yield day, rows


def _with_attempts(
    conn: psycopg.Connection[Any], rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    attempts: dict[str, list[dict[str, Any]]] = {}
    with conn.cursor() as cursor:
        cursor.execute(_ATTEMPTS, ([row["notification_id"] for row in rows],))
        names = [column.name for column in cursor.description or ()][1:]
        for notification_id, *values in cursor:
            attempts.setdefault(notification_id, []).append(dict(zip(names, values, strict=True)))
    for row in rows:
        row["attempt_log"] = attempts.get(row["notification_id"], [])
    return rows
