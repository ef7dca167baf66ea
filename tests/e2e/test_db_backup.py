"""`herald db backup` as an operator runs it: a compressed dump that `pg_restore` reads, one
timestamped file per run, only the newest N kept, and bad arguments refused in one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

from infrastructure.backups import backups_in, pg_dump_binary
from infrastructure.settings import Settings
from tests.e2e.conftest import herald


def test_backups_are_restorable_dumps_and_only_the_newest_are_kept(
    stack: Settings, tmp_path: Path
) -> None:
    made = []
    for _ in range(3):
        result = herald(stack, "db", "backup", "--dir", str(tmp_path), "--keep", "2")
        assert result.returncode == 0, result.stderr
        made.append(Path(result.stdout.split(":")[0]))
    kept = backups_in(tmp_path)
    assert kept == made[1:]  # the oldest went; names sort by time
    assert "1 older backup(s) removed, keeping 2" in result.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    listing = subprocess.run(
        [str(pg_dump_binary().with_name("pg_restore")), "--list", str(kept[-1])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "TABLE public stored_events" in listing.stdout
    assert "TABLE DATA public stored_events" in listing.stdout


def test_bad_arguments_are_refused_in_one_line_and_nothing_is_written(
    stack: Settings, tmp_path: Path
) -> None:
    refused = herald(stack, "db", "backup", "--dir", str(tmp_path), "--keep", "0")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "herald: --keep 0: keep at least 1 backup (the one just made)"
    )
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    refused = herald(stack, "db", "backup", "--dir", str(a_file))
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"herald: --dir {a_file}: not a directory"
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-dir"]
