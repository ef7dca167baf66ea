"""`herald archive run|verify|restore`: archival by hand, with progress bars."""

from __future__ import annotations

import getpass
import socket
import uuid
from datetime import datetime

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from uuid_utils.compat import uuid7

from commands.retention.archival import TenantRun
from commands.retention.restore import Restore, Restored
from infrastructure.archives.files import ArchiveFiles
from infrastructure.archives.verify import ArchiveCheck, verify_archives
from infrastructure.entrypoints.jobs import archival_for
from infrastructure.eventstore import catalog, meta
from infrastructure.settings import Settings, require_servers


def _bar(text: str) -> Progress:
    return Progress(
        TextColumn(text), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    )


def _operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def run(settings: Settings, *, at: datetime, tenant: str | None, dry_run: bool) -> list[TenantRun]:
    archival = archival_for(settings)
    who = _operator()
    about = meta.EventMeta(actor=who, actor_kind="cli", request_id=uuid.uuid4().hex)
    with meta.bound(about), _bar("archiving") as bar:
        task = bar.add_task("archive", total=None)
        return archival.run(
            now=at,
            run_id=uuid7(),
            tenant=tenant,
            requested_by=who,
            dry_run=dry_run,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def verify(settings: Settings) -> ArchiveCheck:
    database_url, _, _ = require_servers(settings)
    with _bar("verifying archives") as bar:
        task = bar.add_task("verify", total=None)
        return verify_archives(
            database_url,
            ArchiveFiles(settings.archive_path),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def restore(settings: Settings, file: str) -> Restored:
    database_url, _, _ = require_servers(settings)
    restoring = Restore(
        database_url=database_url,
        codec=catalog.codec_for(settings),
        files=ArchiveFiles(settings.archive_path),
    )
    who = _operator()
    about = meta.EventMeta(actor=who, actor_kind="cli", request_id=uuid.uuid4().hex)
    with meta.bound(about), _bar("restoring") as bar:
        task = bar.add_task("restore", total=None)
        return restoring.run(
            file,
            restored_by=who,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
