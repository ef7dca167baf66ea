"""`herald export KIND --format F --out FILE`: an export written from the command line, with a
progress bar, a manifest beside the file, and an entry in the audit trail like any other."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import msgspec
from rich.progress import (
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from commands.exports.handlers import record_delivery
from commands.exports.jobs import manifest_of
from infrastructure.archives.files import ArchiveFiles
from infrastructure.eventstore import catalog, meta
from infrastructure.eventstore.store import EventStore
from infrastructure.exports.stream import ExportSpec, Manifest
from infrastructure.settings import Settings, require_servers
from projections.exports.exporter import open_export


def export(settings: Settings, spec: ExportSpec, out: Path) -> Manifest:
    """Write the export to `out` (atomically: whole, or not at all) and its manifest beside it."""
    database_url, _, _ = require_servers(settings)
    codec = catalog.codec_for(settings)
    partial = out.with_name(out.name + ".partial")
    store = EventStore(database_url, codec, pool_size=1)
    request = meta.request(ip=None, user_agent="herald export", request_id=uuid.uuid4().hex)
    try:
        with request, meta.command("ExportFromCli"):
            stream = open_export(
                database_url, codec, spec, archives=ArchiveFiles(settings.archive_path)
            )
            columns = (
                SpinnerColumn(),
                TextColumn(f"{spec.kind} as of position {stream.position}"),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
            )
            try:
                with Progress(*columns) as progress, partial.open("wb") as target:
                    task = progress.add_task("export", total=None)
                    for chunk in stream:
                        target.write(chunk)
                        progress.advance(task, len(chunk))
                    target.flush()
                    os.fsync(target.fileno())
            finally:
                record_delivery(stream, store=store)
        manifest = stream.manifest()
        partial.rename(out)
        manifest_of(out).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
    finally:
        partial.unlink(missing_ok=True)
        store.close()
    return manifest


def summary(manifest: Manifest, out: Path, started: float) -> str:
    return (
        f"{manifest.rows} row(s), {manifest.bytes} bytes as of position {manifest.position}"
        f" in {time.monotonic() - started:.1f} s: {out} (sha256 {manifest.sha256},"
        f" manifest {manifest_of(out)})"
    )
