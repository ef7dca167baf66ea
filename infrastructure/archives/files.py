"""Archive files on disk: written whole before they count, each with its manifest.

A file is first written (with its manifest) under a hidden partial name and synced. The
caller then commits what the file stands for, and only then is it renamed into place.
A crash before the commit leaves a partial that nothing refers to, which `discard` removes;
a crash after it leaves a partial the catalog refers to, which `finish` completes. Hidden
names (a leading `.` or `_`) keep partials and manifests out of Parquet dataset readers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from uuid import UUID

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from infrastructure.archives.layout import NOTIFICATIONS
from infrastructure.durable_files import sync_directory

ROW_GROUP = 50_000
_READ = 1024 * 1024


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """What an archive file holds; `sha256` is of the file's bytes."""

    path: str  # under the archive directory
    kind: str
    format: str
    tenant_id: str
    day: date
    run_id: UUID
    rows: int
    bytes: int
    sha256: str
    created_at: datetime
    columns: list[str]


class ArchiveFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def absolute(self, path: str) -> Path:
        """The file at `path` under the archive directory; ValueError for a path outside it."""
        full = (self.directory / path).resolve()
        if not full.is_relative_to(self.directory.resolve()):
            raise ValueError(f"{path}: outside the archive directory {self.directory}")
        return full

    def write_partial(
        self,
        path: str,
        table: pa.Table,
        *,
        tenant_id: str,
        day: date,
        run_id: UUID,
        created_at: datetime,
    ) -> Manifest:
        """Write `table` and its manifest under partial names, synced; returns the manifest."""
        target = self.absolute(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial(target)
        with pq.ParquetWriter(partial, NOTIFICATIONS, compression="zstd") as writer:
            writer.write_table(table.cast(NOTIFICATIONS), row_group_size=ROW_GROUP)
        _sync(partial)
        manifest = Manifest(
            path=path,
            kind="notifications",
            format="parquet",
            tenant_id=tenant_id,
            day=day,
            run_id=run_id,
            rows=table.num_rows,
            bytes=partial.stat().st_size,
            sha256=sha256_of(partial),
            created_at=created_at,
            columns=NOTIFICATIONS.names,
        )
        manifest_partial = _partial(manifest_of(target))
        manifest_partial.write_bytes(msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
        _sync(manifest_partial)
        return manifest

    def finish(self, path: str) -> bool:
        """Move a committed file and its manifest into place; False when there was nothing
        to move (already done)."""
        target = self.absolute(path)
        moved = False
        for final in (target, manifest_of(target)):
            partial = _partial(final)
            if partial.exists():
                partial.replace(final)
                moved = True
        if moved:
            sync_directory(target.parent)
        return moved

    def discard(self, path: str) -> None:
        target = self.absolute(path)
        for final in (target, manifest_of(target)):
            _partial(final).unlink(missing_ok=True)

    def partials(self) -> list[str]:
        """The paths of files written but not yet moved into place."""
        if not self.directory.exists():
            return []
        found = []
        for partial in self.directory.glob("tenant_id=*/day=*/.part-*.parquet.partial"):
            final = partial.with_name(partial.name.removeprefix(".").removesuffix(".partial"))
            found.append(final.relative_to(self.directory).as_posix())
        return sorted(found)

    def files(self) -> Iterator[str]:
        """Every archive file in place, by path."""
        if self.directory.exists():
            for file in sorted(self.directory.glob("tenant_id=*/day=*/part-*.parquet")):
                yield file.relative_to(self.directory).as_posix()

    def manifest(self, path: str) -> Manifest:
        return msgspec.json.decode(manifest_of(self.absolute(path)).read_bytes(), type=Manifest)

    def problems(self, path: str, sha256: str, rows: int) -> list[str]:
        """What is wrong with the file at `path`, given the hash and row count the catalog
        holds: a missing file or manifest, a hash or a count that does not match."""
        target = self.absolute(path)
        if not target.exists():
            pending = " (written, not yet moved into place)" if _partial(target).exists() else ""
            return [f"{path}: missing{pending}"]
        found = []
        actual = sha256_of(target)
        if actual != sha256:
            found.append(f"{path}: SHA-256 {actual} is not the catalog's {sha256}")
        try:
            manifest = self.manifest(path)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            return [*found, f"{path}: manifest unreadable: {exc}"]
        if manifest.sha256 != actual:
            found.append(f"{path}: SHA-256 {actual} is not the manifest's {manifest.sha256}")
        counted = pq.ParquetFile(target).metadata.num_rows
        if not manifest.rows == rows == counted:
            found.append(
                f"{path}: {counted} rows; the manifest says {manifest.rows}, the catalog {rows}"
            )
        return found

    def read(self, path: str) -> Iterator[pa.RecordBatch]:
        """The file's rows, a batch at a time."""
        yield from pq.ParquetFile(self.absolute(path)).iter_batches(batch_size=10_000)


def manifest_of(file: Path) -> Path:
    return file.with_name(f"_{file.stem}.manifest.json")


def sha256_of(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while block := handle.read(_READ):
            digest.update(block)
    return digest.hexdigest()


def _partial(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial")


def _sync(file: Path) -> None:
    with file.open("rb+") as handle:
        os.fsync(handle.fileno())
