"""Export jobs: written to a file by a scheduler, described by a manifest, removed on expiry.

A scheduler's poll runs waiting jobs, each under an advisory lock on its id taken on the
connection the job is recorded with, so a scheduler that dies mid-export leaves the job to
the next poll, which writes it again from the start (a file is renamed into place only
once complete). Its completion is recorded with the request's own metadata, so the audit
trail shows one action: who asked, with which filters, and how many rows it gave.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from commands.exports.handlers import Exporter
from domain.exports import ExportCompleted
from infrastructure.eventstore import meta
from infrastructure.eventstore.store import EventStore
from infrastructure.exports.stream import ExportSpec
from infrastructure.log import get_logger
from infrastructure.scheduling.runs import try_lock, unlock

log = get_logger(__name__)

PROGRESS_EVERY = 8 * 1024 * 1024  # bytes between progress updates
EXTENSIONS = {"csv": "csv", "ndjson": "ndjson", "json": "json", "parquet": "parquet"}

_WAITING = (
    "SELECT export_id FROM export_jobs WHERE status IN ('pending', 'running') ORDER BY requested_at"
)
_ONE = "SELECT spec, meta, status FROM export_jobs WHERE export_id = %s"
_STARTED = (
    "UPDATE export_jobs SET status = 'running', started_at = now(), attempts = attempts + 1,"
    " bytes_written = 0 WHERE export_id = %s"
)
_PROGRESS = "UPDATE export_jobs SET bytes_written = %s WHERE export_id = %s"
_DONE = """
UPDATE export_jobs SET status = 'done', finished_at = now(), expires_at = %s, manifest = %s,
    file = %s, bytes_written = %s
WHERE export_id = %s
"""
_FAILED = (
    "UPDATE export_jobs SET status = 'failed', finished_at = now(), error = %s WHERE export_id = %s"
)
_EXPIRED = "SELECT export_id, file FROM export_jobs WHERE status = 'done' AND expires_at < %s"
_FORGET = "UPDATE export_jobs SET status = 'expired', file = NULL WHERE export_id = %s"


def file_of(directory: Path, export_id: UUID, fmt: str) -> Path:
    return directory / f"{export_id}.{EXTENSIONS[fmt]}"


def manifest_of(file: Path) -> Path:
    return file.with_name(file.name + ".manifest.json")


class ExportJobs:
    """Writes waiting export jobs; a scheduler's poll calls `run_waiting`."""

    def __init__(
        self,
        *,
        database_url: str,
        exporter: Exporter,
        store: EventStore,
        directory: Path,
        ttl: timedelta,
    ) -> None:
        self._database_url = database_url
        self._exporter = exporter
        self._store = store
        self._directory = directory
        self._ttl = ttl

    def run_waiting(self) -> int:
        """Write every waiting export no other scheduler is writing; returns how many."""
        done = 0
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            for (export_id,) in conn.execute(_WAITING).fetchall():
                name = f"export:{export_id}"
                if not try_lock(conn, name):
                    continue
                try:
                    row = conn.execute(_ONE, (export_id,)).fetchone()
                    if row is None or row[2] not in {"pending", "running"}:
                        continue  # finished meanwhile by whoever held the lock before
                    spec = msgspec.convert(row[0], ExportSpec)
                    # Opened, so that the completion is sealed afresh like any metadata.
                    raw = bytes(row[1]) if row[1] is not None else None
                    about = self._store.codec.decode_meta(raw)
                    self._write(conn, export_id, spec, about)
                    done += 1
                finally:
                    unlock(conn, name)
        return done

    def _write(
        self,
        conn: psycopg.Connection[Any],
        export_id: UUID,
        spec: ExportSpec,
        about: meta.EventMeta | None,
    ) -> None:
        conn.execute(_STARTED, (export_id,))
        target = file_of(self._directory, export_id, spec.format)
        partial = target.with_name(target.name + ".partial")
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            stream = self._exporter(spec)
            written, reported = 0, 0
            with partial.open("wb") as out:
                for chunk in stream:
                    out.write(chunk)
                    written += len(chunk)
                    if written - reported >= PROGRESS_EVERY:
                        conn.execute(_PROGRESS, (written, export_id))
                        reported = written
                out.flush()
                os.fsync(out.fileno())
            manifest = stream.manifest()
            partial.rename(target)
            manifest_of(target).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
        except Exception as exc:
            partial.unlink(missing_ok=True)
            log.exception("export failed", export_id=str(export_id))
            conn.execute(_FAILED, (f"{type(exc).__name__}: {exc}"[:500], export_id))
            return
        expires = datetime.now(UTC) + self._ttl
        conn.execute(
            _DONE,
            (expires, Jsonb(msgspec.to_builtins(manifest)), str(target), written, export_id),
        )
        completed = ExportCompleted(
            at=datetime.now(UTC),
            tenant_id=spec.tenant,
            export_id=export_id,
            position=manifest.position,
            rows=manifest.rows,
            bytes=manifest.bytes,
            sha256=manifest.sha256,
        )
        with meta.bound(about):
            self._store.append(export_id, 1, [completed])
        log.info("export written", export_id=str(export_id), rows=manifest.rows)


def expire_exports(*, database_url: str, now: datetime) -> int:
    """Delete the files of exports past their time; returns how many."""
    expired = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        for export_id, file in conn.execute(_EXPIRED, (now,)).fetchall():
            if file:
                Path(file).unlink(missing_ok=True)
                manifest_of(Path(file)).unlink(missing_ok=True)
            conn.execute(_FORGET, (export_id,))
            expired += 1
    return expired
