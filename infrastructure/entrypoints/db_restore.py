"""`herald db restore FILE --yes`: a backup into an empty database, then everything that
follows the log made to agree with it, with a progress bar per step:

    restore      pg_restore, in one transaction (all of it, or an empty database still)
    migrate      a backup made by an older Herald gets the migrations made since
    erasures     each erasure recorded outside the database that the backup has not
                 finished: the subject's keys destroyed again, the request recorded again
                 for a scheduler to carry out (`commands/privacy/reapply.py`)
    redis        every key of the namespace deleted: none may outlive the restore
    kafka        the topics made again, the whole log republished from position 0
    read models  the notifications read models rebuilt from the restored log, Redis
                 refilled from them

Nothing is written until the file reads as a backup, the database holds no tables and the
erasure record reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from commands.privacy.reapply import Reapplied, reapply_erasures
from infrastructure.backups import (
    BackupError,
    NotEmptyError,
    dump_entries,
    restore_dump,
    tables_in,
)
from infrastructure.eventstore import catalog
from infrastructure.eventstore.store import EventStore
from infrastructure.migrations import migrate
from infrastructure.privacy.erasure_record import (
    ErasureRecord,
    ErasureRecordError,
    RecordedErasure,
)
from infrastructure.restoring import (
    RestoringError,
    clear_redis,
    forget_followers,
    remake_topics,
    republish,
)
from infrastructure.settings import Settings, require_servers
from projections.notifications import rebuild as rebuild_model


class RestoreRefusedError(Exception):
    """Nothing was written: the message says why and what to do, in one line."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HalfRestoredError(Exception):
    """A step after the dump's restore failed: the database is to be made again."""


_STEP_ERRORS = (BackupError, RestoringError, ErasureRecordError, psycopg.Error, RedisError)
RESTORE_ERRORS = (*_STEP_ERRORS, HalfRestoredError)


@dataclass(frozen=True)
class Restored:
    path: Path
    database: str
    items: int  # tables, their data, indexes... as pg_restore counts them
    migrations: int  # applied after the restore
    events: int
    head: int  # the restored log's last position (with any erasure asked for again)
    erasures: Reapplied
    redis_keys: int  # deleted
    republished: int
    rows: int  # notifications in the rebuilt read model
    position: int  # the position it was rebuilt up to
    seconds: float


def restore(settings: Settings, path: Path, *, usage: int, failure: int) -> Restored:
    """RestoreRefusedError, with `usage` or `failure` as its exit status, when nothing may be
    written; the error of the step that failed otherwise."""
    started = time.monotonic()
    database_url, redis_url, bootstrap = require_servers(settings)
    codec = catalog.codec_for(settings)  # sealed fields need the master key: checked first
    items, database, recorded = _check(settings, path, usage=usage, failure=failure)
    names = list(catalog.NOTIFICATION_EVENT_NAMES)
    with _steps() as step:
        with step("restoring the backup", items) as advance:
            done = 0

            def restored_one() -> None:
                nonlocal done
                done += 1
                advance(min(done, items), items)

            restore_dump(database_url, path, restored_one)
        try:
            with step("applying migrations", None) as advance:
                applied = migrate(database_url)
                advance(len(applied), len(applied))
            with step("re-applying erasures", len(recorded)) as advance:
                store = EventStore(database_url, codec, pool_size=1)
                keyring = codec.sealer.keyring if codec.sealer is not None else None
                assert keyring is not None  # noqa: S101 - codec_for always seals
                try:
                    with psycopg.connect(database_url, autocommit=True) as conn:
                        forget_followers(conn)
                        erasures = reapply_erasures(
                            conn, recorded, store=store, keyring=keyring, progress=advance
                        )
                        events, head = _log_size(conn)
                finally:
                    store.close()
            with step("clearing Redis", None) as advance:
                redis_keys = clear_redis(
                    redis_url, settings.namespace, lambda deleted: advance(deleted, None)
                )
            with step("republishing to Kafka", None) as advance:
                remake_topics(bootstrap, settings.namespace, settings.kafka_partitions)
                republished = republish(settings, codec, names, advance)
            with step("rebuilding the read models", None) as advance:
                position = rebuild_model.rebuild(
                    database_url,
                    codec,
                    names,
                    progress=advance,
                    redis_target=(redis_url, settings.namespace),
                )
                with psycopg.connect(database_url) as conn:
                    row = conn.execute("SELECT count(*) FROM notification_view").fetchone()
                rows = int(row[0]) if row else 0
        except _STEP_ERRORS as exc:
            raise HalfRestoredError(
                f"{first_line(exc)}; the database is half restored: drop it, make it again"
                " empty and run the restore again"
            ) from exc
    return Restored(
        path=path,
        database=database,
        items=items,
        migrations=len(applied),
        events=events,
        head=head,
        erasures=erasures,
        redis_keys=redis_keys,
        republished=republished,
        rows=rows,
        position=position,
        seconds=time.monotonic() - started,
    )


def _check(
    settings: Settings, path: Path, *, usage: int, failure: int
) -> tuple[int, str, list[RecordedErasure]]:
    """The backup's item count, the database's name and the erasures recorded, once nothing
    stands in the way."""
    database_url, _, _ = require_servers(settings)
    if not path.is_file():
        raise RestoreRefusedError(f"{path}: no such backup file", usage)
    try:
        items = dump_entries(path)
    except BackupError as exc:
        raise RestoreRefusedError(str(exc), usage) from None
    database = str(conninfo_to_dict(database_url).get("dbname", "?"))
    try:
        held = tables_in(database_url)
    except BackupError as exc:
        raise RestoreRefusedError(str(exc), failure) from None
    if held:
        raise RestoreRefusedError(
            f"database {database} {NotEmptyError(held)}: restore into an empty one"
            f" (`createdb {database}_restored`, then point HERALD_DATABASE_URL at it)",
            failure,
        )
    try:
        recorded = ErasureRecord(settings.erasure_record_path).erasures()
    except ErasureRecordError as exc:
        raise RestoreRefusedError(str(exc), failure) from None
    return items, database, recorded


def summary(restored: Restored) -> str:
    erasures = restored.erasures
    return (
        f"{restored.path} restored into {restored.database}: {restored.events:,} events"
        f" up to position {restored.head:,}, {restored.migrations} migration(s) applied;"
        f" {erasures.reapplied} of {erasures.recorded} recorded erasure(s) re-applied"
        f" ({erasures.keys} key(s) destroyed again, {erasures.requested} asked for again);"
        f" {restored.redis_keys:,} Redis key(s) cleared; {restored.republished:,} event(s)"
        f" republished to Kafka; {restored.rows:,} notification(s) rebuilt up to position"
        f" {restored.position:,}; in {restored.seconds:.1f} s"
    )


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _log_size(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    row = conn.execute(
        "SELECT count(*), coalesce(max(notification_id), 0) FROM stored_events"
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


Advance = Callable[[int, int | None], None]


@contextmanager
def _steps() -> Iterator[Callable[[str, int | None], _Step]]:
    """A bar per step, on stderr: stdout keeps the one-line summary."""
    columns = (
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield lambda description, total: _Step(progress, description, total)


class _Step:
    def __init__(self, progress: Progress, description: str, total: int | None) -> None:
        self._progress = progress
        self._task: TaskID = progress.add_task(description, total=total)

    def __enter__(self) -> Advance:
        def advance(done: int, total: int | None) -> None:
            if total is None:
                self._progress.update(self._task, completed=done)
            else:
                self._progress.update(self._task, completed=done, total=total)

        return advance

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:  # a finished step shows full, whatever its count was
            task = next(t for t in self._progress.tasks if t.id == self._task)
            total = task.total if task.total is not None else task.completed
            self._progress.update(self._task, completed=total, total=total)
