"""`herald archive verify`: every archive the catalog names is in place, whole and as its
manifest describes it, and every file in the directory is in the catalog."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from infrastructure.archives.files import ArchiveFiles

_CATALOG = "SELECT path, rows, sha256 FROM archives ORDER BY path"


@dataclass
class ArchiveCheck:
    files: int = 0
    rows: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_archives(
    database_url: str,
    files: ArchiveFiles,
    progress: Callable[[int, int], None] | None = None,
) -> ArchiveCheck:
    with psycopg.connect(database_url) as conn:
        catalog = conn.execute(_CATALOG).fetchall()
    check = ArchiveCheck()
    for done, (path, rows, sha256) in enumerate(catalog, start=1):
        check.problems += files.problems(path, sha256, rows)
        check.files += 1
        check.rows += rows
        target = files.absolute(path)
        if target.exists():
            check.bytes += target.stat().st_size
        if progress is not None:
            progress(done, len(catalog))
    known = {row[0] for row in catalog}
    check.problems += [f"{path}: not in the catalog" for path in files.files() if path not in known]
    return check
