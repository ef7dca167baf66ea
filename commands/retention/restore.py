"""Restoring an archive file: its notifications come back into the read models as they were
archived, each by a `NotificationRestored` event, and the restore itself is recorded
(`ArchiveRestored`, audited).

A notification comes back only while the projection's record says this file holds it and
its archival is its stream's last event (or its stream is empty, its events gone with
retention). So restoring a file twice changes nothing the second time, and a notification
archived again since (into another file) is left to that file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg

from domain.errors import InvalidValueError, NotFoundError
from domain.notifications.events import ArchivedNotification
from domain.notifications.notification import restore
from domain.retention import ArchiveRestored
from infrastructure.archives.files import ArchiveFiles
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.conditional import NextEvent, append_unless_moved
from infrastructure.scheduling.runs import lock_key

ARCHIVAL_JOB = "archive"  # a restore waits for a running archival, which removes events
_RESTORES = uuid.UUID("0b6f3f7e-61c4-4a0e-8f7a-2d5c9e4b1a63")
_CATALOG = "SELECT tenant_id, rows, sha256 FROM archives WHERE path = %s"
_HELD = (
    "SELECT notification_id, version FROM archived_notifications"
    " WHERE notification_id = ANY(%s::uuid[]) AND archive = %s AND restored_position IS NULL"
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Restored:
    path: str
    tenant_id: str
    rows: int  # in the file
    restored: int  # brought back now
    left: int  # already back, or archived again elsewhere since


@dataclass(frozen=True)
class Restore:
    database_url: str
    codec: EventCodec
    files: ArchiveFiles

    def run(self, file: str, *, restored_by: str, progress: Progress | None = None) -> Restored:
        """Bring back the notifications of the archive `file` (its path under the archive
        directory, or anywhere inside it); InvalidValueError or NotFoundError naming it."""
        path = self._relative(file)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            found = conn.execute(_CATALOG, (path,)).fetchone()
            if found is None:
                raise NotFoundError(f"{file}: no archive of that path is in the catalog")
            tenant, rows, sha256 = found
            problems = self.files.problems(path, sha256, rows)
            if problems:
                raise InvalidValueError("FILE", "; ".join(problems))
            conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(ARCHIVAL_JOB),))
            restored = done = 0
            now = datetime.now(UTC)
            for batch in self.files.read(path):
                restored += self._restore_batch(conn, batch.to_pylist(), path, tenant, now)
                done += batch.num_rows
                if progress is not None:
                    progress(done, rows)
            self._record(
                conn, path=path, tenant=tenant, restored=restored, restored_by=restored_by, now=now
            )
        return Restored(path, tenant, rows, restored, rows - restored)

    def _relative(self, file: str) -> str:
        candidate = self.files.directory / file
        try:
            full = self.files.absolute(str(candidate))
        except ValueError:
            raise InvalidValueError("FILE", f"{file}: not inside {self.files.directory}") from None
        return full.relative_to(self.files.directory.resolve()).as_posix()

    def _restore_batch(
        self,
        conn: psycopg.Connection[Any],
        rows: list[dict[str, Any]],
        path: str,
        tenant: str,
        now: datetime,
    ) -> int:
        ids = [row["notification_id"] for row in rows]
        held = dict(conn.execute(_HELD, (ids, path)).fetchall())
        appends = []
        for row in rows:
            notification_id = UUID(row["notification_id"])
            if notification_id not in held:
                continue
            event = restore(
                tenant_id=tenant,
                archived_version=held[notification_id],
                held=msgspec.convert(row, ArchivedNotification),
                archive_path=path,
                at=now,
            )
            appends.append(NextEvent(notification_id, event.stream_version, event))
        with conn.transaction():
            return len(append_unless_moved(conn, self.codec, appends))

    def _record(
        self,
        conn: psycopg.Connection[Any],
        *,
        path: str,
        tenant: str,
        restored: int,
        restored_by: str,
        now: datetime,
    ) -> None:
        if not restored:
            return
        event = ArchiveRestored(
            at=now, tenant_id=tenant, archive=path, restored=restored, restored_by=restored_by
        )
        stream = uuid.uuid5(_RESTORES, f"{path}:{now.isoformat()}")
        with conn.transaction():
            append_unless_moved(conn, self.codec, [NextEvent(stream, 1, event)])
