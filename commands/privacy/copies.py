"""An erased subject's rows taken out of the files Herald wrote: export files that have not
expired, and Parquet archives.

A file is rewritten beside itself, synced, and renamed over the old one, then its manifest
is rewritten to match (rows, bytes, SHA-256), so a reader sees the old file or the new one,
never half of either. A rewrite that finds nothing to change leaves the file alone.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg.types.json import Jsonb

from commands.exports.jobs import manifest_of as export_manifest_of
from domain.privacy import StoreReport, SubjectKind
from infrastructure.archives.files import ArchiveFiles, manifest_of, sha256_of
from infrastructure.exports.stream import Manifest as ExportManifest
from infrastructure.privacy.keyring import Keyring, Subject

if TYPE_CHECKING:
    from commands.privacy.job import Job

Row = dict[str, Any]
Change = Callable[[Row], Row | None]  # the row as it stays; None: the row goes
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Rewritten:
    rows: int  # rows the file holds now
    dropped: int
    changed: int  # rows kept with personal fields blanked

    @property
    def touched(self) -> int:
        return self.dropped + self.changed


def rewrite(file: Path, fmt: str, change: Change) -> Rewritten:
    """Apply `change` to every row of the export or archive file; the file is replaced only
    when some row changed."""
    rows = list(_read(file, fmt))
    kept: list[Row] = []
    dropped = changed = 0
    for row in rows:
        after = change(row)
        if after is None:
            dropped += 1
        else:
            changed += after != row
            kept.append(after)
    if dropped or changed:
        partial = file.with_name(f".{file.name}.erasing")
        with partial.open("wb") as out:
            _write(out, fmt, kept, file)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(file)
    return Rewritten(len(kept), dropped, changed)


def _read(file: Path, fmt: str) -> Iterator[Row]:
    if fmt == "parquet":
        yield from pq.read_table(file).to_pylist()
    elif fmt == "csv":
        with file.open(newline="", encoding="utf-8") as text:
            yield from csv.DictReader(text)
    else:  # ndjson, and json: an array with one value per line (see exports.formats)
        with file.open("rb") as lines:
            for raw in lines:
                line = raw.strip().removeprefix(b"[").removesuffix(b"]").removesuffix(b",")
                if line:
                    yield msgspec.json.decode(line)


def _write(out: Any, fmt: str, rows: list[Row], original: Path) -> None:
    if fmt == "parquet":
        schema = pq.read_schema(original)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), out, compression="zstd")
    elif fmt == "csv":
        with original.open(newline="", encoding="utf-8") as text:
            header = next(csv.reader(text), [])
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        out.write(buffer.getvalue().encode())
    elif fmt == "ndjson":
        out.write(b"".join(_json.encode(row) + b"\n" for row in rows))
    else:
        out.write(b"[" + b",\n".join(_json.encode(row) for row in rows) + b"]\n")


# The rows of the subject in each kind of export, given the ids of its notifications and a
# test for its address.
def _export_change(
    kind: str, job: Job, ids: set[str], is_subject: Callable[[str], bool]
) -> Change | None:
    if kind == "notifications" and job.kind is SubjectKind.RECIPIENT:
        return lambda row: None if row["id"] in ids or is_subject(row["recipient"] or "") else row
    if kind == "events" and job.kind is SubjectKind.RECIPIENT:
        return lambda row: None if row["stream_id"] in ids else row
    if kind == "audit":
        return lambda row: _audit_row(row, job, is_subject)
    return None


def _audit_row(row: Row, job: Job, is_subject: Callable[[str], bool]) -> Row:
    details = row.get("details")
    parsed = msgspec.json.decode(details) if isinstance(details, str) and details else {}
    email = parsed.get("email") if isinstance(parsed, dict) else None
    if job.kind is SubjectKind.USER:
        mine = job.ref in {row.get("actor"), row.get("subject")}
    else:
        mine = bool(email) and is_subject(str(email))
    if not mine:
        return row
    parsed.pop("email", None)
    return {**row, "ip": None, "user_agent": None, "details": _json.encode(parsed).decode()}


_EXPORTS = """
SELECT export_id, spec->>'kind', spec->>'format', file FROM export_jobs
WHERE tenant_id = %s AND status = 'done' AND file IS NOT NULL
"""
_EXPORT_MANIFEST = "UPDATE export_jobs SET manifest = %s, bytes_written = %s WHERE export_id = %s"
_ARCHIVES = "SELECT path FROM archives WHERE tenant_id = %s ORDER BY path"
_FORGET_ARCHIVED = "DELETE FROM archived_notifications WHERE notification_id = ANY(%s::uuid[])"
_ARCHIVE_ROW = "UPDATE archives SET rows = %s, bytes = %s, sha256 = %s WHERE path = %s"


def erase_from_copies(
    conn: psycopg.Connection[Any], job: Job, keyring: Keyring, *, archives: ArchiveFiles
) -> dict[str, StoreReport]:
    """Take the subject's rows out of the tenant's export files and archives."""
    ids = set(job.progress.get("found", {}).get("ids", []))
    wanted = job.hashed(keyring) if job.kind is SubjectKind.RECIPIENT else None

    def is_subject(address: str) -> bool:
        subject = Subject(job.tenant_id, "recipient", address)
        return wanted is not None and bool(address) and keyring.subject_hash(subject) == wanted

    exported = _exports(conn, job, ids, is_subject)
    archived = _archives(conn, job, is_subject, archives) if wanted is not None else None
    reports = {"exports": exported}
    if archived is not None:
        reports["archives"] = archived
    return reports


def _exports(
    conn: psycopg.Connection[Any], job: Job, ids: set[str], is_subject: Callable[[str], bool]
) -> StoreReport:
    touched = files = 0
    for export_id, kind, fmt, name in conn.execute(_EXPORTS, (job.tenant_id,)).fetchall():
        change = _export_change(kind, job, ids, is_subject)
        file = Path(name)
        if change is None or not file.exists():
            continue
        result = rewrite(file, fmt, change)
        if not result.touched:
            continue
        touched += result.touched
        files += 1
        manifest_file = export_manifest_of(file)
        manifest = msgspec.json.decode(manifest_file.read_bytes(), type=ExportManifest)
        manifest = msgspec.structs.replace(
            manifest, rows=result.rows, bytes=file.stat().st_size, sha256=sha256_of(file)
        )
        _replace_bytes(manifest_file, msgspec.json.format(msgspec.json.encode(manifest)))
        conn.execute(
            _EXPORT_MANIFEST, (Jsonb(msgspec.to_builtins(manifest)), manifest.bytes, export_id)
        )
    note = f"rows rewritten in {files} export files" if files else ""
    return StoreReport(found=touched, scrubbed=touched, note=note)


def _archives(
    conn: psycopg.Connection[Any],
    job: Job,
    is_subject: Callable[[str], bool],
    archives: ArchiveFiles,
) -> StoreReport:
    dropped = files = 0
    for (path,) in conn.execute(_ARCHIVES, (job.tenant_id,)).fetchall():
        file = archives.absolute(path)
        if not file.exists():
            continue
        table = pq.read_table(file, columns=["notification_id", "recipient"]).to_pylist()
        theirs = [row["notification_id"] for row in table if is_subject(row["recipient"] or "")]
        if not theirs:
            continue
        # The catalog first: a run that dies before the file is rewritten finds the rows
        # there again and rewrites it then.
        conn.execute(_FORGET_ARCHIVED, (theirs,))
        result = rewrite(file, "parquet", _without(set(theirs)))
        manifest = msgspec.structs.replace(
            archives.manifest(path),
            rows=result.rows,
            bytes=file.stat().st_size,
            sha256=sha256_of(file),
        )
        _replace_bytes(
            manifest_of(file), msgspec.json.format(msgspec.json.encode(manifest)) + b"\n"
        )
        conn.execute(_ARCHIVE_ROW, (manifest.rows, manifest.bytes, manifest.sha256, path))
        dropped += len(theirs)
        files += 1
    note = f"rows removed from {files} archive files" if files else ""
    return StoreReport(found=dropped, scrubbed=dropped, note=note)


def _without(ids: set[str]) -> Change:
    return lambda row: None if row["notification_id"] in ids else row


def _replace_bytes(target: Path, data: bytes) -> None:
    partial = target.with_name(f".{target.name}.erasing")
    partial.write_bytes(data)
    partial.replace(target)
