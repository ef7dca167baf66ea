"""Applies the numbered SQL files in `migrations/`, each once, each in its own transaction.

Applied files are recorded in `schema_migrations` with a SHA-256 checksum, so an edited,
already-applied file is caught rather than silently ignored. A PostgreSQL advisory lock
makes concurrent runs (several replicas starting at once) safe: the second waits, then
finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from infrastructure.log import get_logger

log = get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_KEY = int.from_bytes(b"herald-m", "big") >> 1  # any fixed bigint; this one is legible

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The migrations on disk and in the database disagree, or a file is malformed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: expected a name like 0001_create_things.sql")
        version = int(match["version"])
        if version in migrations:
            other = migrations[version].path.name
            raise MigrationError(f"{path.name}: version {version:04d} is also used by {other}")
        migrations[version] = Migration(version, match["name"], path)
    return [migrations[v] for v in sorted(migrations)]


def migrate(
    database_url: str,
    directory: Path = MIGRATIONS_DIR,
    on_apply: Callable[[Migration], None] = lambda _: None,
) -> list[Migration]:
    """Apply every pending migration in order; return those applied by this call."""
    pending = discover(directory)
    applied_now: list[Migration] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_CREATE_LEDGER)
            recorded: dict[int, str] = dict(
                conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
            )
            for migration in pending:
                if migration.version in recorded:
                    if recorded[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"{migration.path.name} was edited after it was applied; "
                            "add a new migration instead of changing an applied one"
                        )
                    continue
                on_apply(migration)
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                log.info("migration applied", version=migration.version, name=migration.name)
                applied_now.append(migration)
            unknown = sorted(set(recorded) - {m.version for m in pending})
            if unknown:
                log.warning("database has migrations this code does not know", versions=unknown)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
