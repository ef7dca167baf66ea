"""The record of erasures kept outside the database: one JSON line per erasure that destroyed
keys, appended and synced before the keys go, so that a restore from a backup taken before
the erasure can destroy them again (the backup still holds them, and its `erasures` table
knows nothing of it).

A line names the subject only as the erasures table does: its tenant, its kind, its keyed
hash and its reference (the hash again for a recipient, the account's id for a user), with
the erasure's id and times. Never an address, never a key. The file only grows; an erasure
run again writes its line again, and readers keep the latest line per erasure.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from datetime import datetime
from pathlib import Path

import msgspec

from infrastructure.durable_files import sync_directory

FILE_NAME = "erasures.jsonl"


class ErasureRecordError(Exception):
    """The record cannot be written or read; the message says why, in one line."""


class RecordedErasure(msgspec.Struct, frozen=True, kw_only=True):
    erasure_id: uuid.UUID
    tenant_id: str
    subject_kind: str  # recipient, user
    subject_hash: str  # hex of the keyed hash that names the subject's keys
    subject_ref: str  # as the erasures row has it
    requested_at: datetime
    # The database's clock when the keys were destroyed: keys made after it are not the
    # erasure's (a subject erased once may be written to again, under a new key).
    keys_destroyed_at: datetime

    @property
    def subject_name(self) -> tuple[str, str, bytes]:
        """(tenant, kind, keyed hash), as subject_keys names a subject."""
        return (self.tenant_id, self.subject_kind, bytes.fromhex(self.subject_hash))


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RecordedErasure)


class ErasureRecord:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME

    def append(self, erasure: RecordedErasure) -> None:
        """Add the line and sync it to disk; ErasureRecordError when it cannot be."""
        line = _encoder.encode(erasure) + b"\n"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                # Schedulers on several machines may share the directory: one line at a time.
                fcntl.flock(fd, fcntl.LOCK_EX)
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(0, f"wrote {written} of {len(line)} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                sync_directory(self.directory)
        except OSError as exc:
            raise ErasureRecordError(
                f"{self.path}: cannot record erasure {erasure.erasure_id} ({exc.strerror or exc})"
            ) from None

    def erasures(self) -> list[RecordedErasure]:
        """Every erasure recorded, the latest line of each, in the order first recorded.

        A last line without its newline is a write cut short (the erasure step that wrote it
        failed and is run again), so it is left out; any other unreadable line is an error."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ErasureRecordError(f"{self.path}: cannot read it ({exc.strerror})") from None
        lines = raw.split(b"\n")
        latest: dict[uuid.UUID, RecordedErasure] = {}
        for number, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                erasure = _decoder.decode(line)
            except msgspec.ValidationError as exc:
                raise ErasureRecordError(f"{self.path}: line {number}: {exc}") from None
            except msgspec.DecodeError:
                raise ErasureRecordError(f"{self.path}: line {number} is not JSON") from None
            latest[erasure.erasure_id] = erasure
        return list(latest.values())
