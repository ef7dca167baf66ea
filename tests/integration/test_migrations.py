"""Migrations apply once, in order, each atomically; edits and concurrent runs are handled."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from infrastructure.migrations import MIGRATIONS_DIR, MigrationError, discover, migrate


def _copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, target)
    return target


def _ledger(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()


def test_all_migrations_apply_to_an_empty_database_and_are_recorded(fresh_database: str) -> None:
    applied = migrate(fresh_database)
    assert [m.version for m in applied] == [m.version for m in discover()]
    assert _ledger(fresh_database) == [(m.version, m.name) for m in discover()]
    with psycopg.connect(fresh_database) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables").fetchall()}
    assert {"stored_events", "tracking", "schema_migrations"} <= tables


def test_a_second_run_applies_nothing(fresh_database: str) -> None:
    migrate(fresh_database)
    assert migrate(fresh_database) == []


def test_an_edited_applied_migration_is_an_error(fresh_database: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    migrate(fresh_database, directory)
    first = sorted(directory.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match=f"{first.name} was edited after it was applied"):
        migrate(fresh_database, directory)


def test_a_failing_migration_leaves_nothing_behind(fresh_database: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    (directory / "0900_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n"
    )
    with pytest.raises(psycopg.errors.UndefinedTable):
        migrate(fresh_database, directory)
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
    assert 900 not in dict(_ledger(fresh_database))
    # The migrations before it were committed, each in its own transaction.
    assert [v for v, _ in _ledger(fresh_database)] == [m.version for m in discover()]


def test_concurrent_runs_apply_each_migration_exactly_once(fresh_database: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(len(migrate(fresh_database)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [0, 0, 0, len(discover())]
    assert len(_ledger(fresh_database)) == len(discover())


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql"])
def test_badly_named_files_are_rejected(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="expected a name like"):
        discover(tmp_path)


def test_two_files_with_one_version_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="version 0001 is also used"):
        discover(tmp_path)
