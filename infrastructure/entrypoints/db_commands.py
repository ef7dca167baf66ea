"""`herald db backup`: a timestamped, compressed dump of the database, the newest N kept;
`herald db restore FILE --yes`: one back into an empty database, Kafka and Redis made to agree."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from infrastructure.settings import Settings, require_servers

EXIT_FAILURE, EXIT_USAGE = 1, 2


def add_db_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="the PostgreSQL database: backups and restores")
    db_sub = db.add_subparsers(dest="db_command", required=True, parser_class=parser_class)
    backup = db_sub.add_parser(
        "backup",
        help="dump the database (pg_dump, custom format, compressed) into a timestamped file "
        "and keep the newest N",
    )
    backup.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where backups go (default: HERALD_BACKUP_DIR, or HERALD_DEV_DIR/backups)",
    )
    backup.add_argument(
        "--keep",
        type=int,
        default=None,
        metavar="N",
        help="how many of the newest backups to keep (default: HERALD_BACKUP_KEEP, 7)",
    )
    restore = db_sub.add_parser(
        "restore",
        help="restore a backup into an empty database, republish the log to Kafka, clear and "
        "rebuild the read models, and destroy again the keys of subjects erased since",
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="a `herald db backup` file")
    restore.add_argument(
        "--yes",
        action="store_true",
        help="confirm: the namespace's Kafka topics and Redis keys are deleted and refilled",
    )


def db_command(args: argparse.Namespace, settings: Settings) -> None:
    if args.db_command == "restore":
        _restore(args, settings)
    else:
        _backup(args, settings)


def _backup(args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.backups import BackupError, back_up  # noqa: PLC0415

    keep = settings.backup_keep if args.keep is None else args.keep
    if keep < 1:
        _fail(f"--keep {keep}: keep at least 1 backup (the one just made)", EXIT_USAGE)
    directory = settings.backup_path if args.dir is None else args.dir.expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        _fail(f"--dir {directory}: not a directory", EXIT_USAGE)
    database_url, _, _ = require_servers(settings)
    try:
        made = back_up(database_url, directory, keep=keep)
    except BackupError as exc:
        _fail(str(exc), EXIT_FAILURE)
    print(
        f"{made.path}: {made.bytes:,} bytes in {made.seconds:.1f} s;"
        f" {len(made.removed)} older backup(s) removed, keeping {keep}"
    )


def _restore(args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.entrypoints import db_restore  # noqa: PLC0415

    if not args.yes:
        _fail(
            f"db restore {args.file}: add --yes to confirm; the restore deletes and refills"
            f" the Kafka topics and Redis keys of namespace {settings.namespace!r}",
            EXIT_USAGE,
        )
    try:
        restored = db_restore.restore(
            settings, args.file.expanduser().resolve(), usage=EXIT_USAGE, failure=EXIT_FAILURE
        )
    except db_restore.RestoreRefusedError as exc:
        _fail(str(exc), exc.status)
    except db_restore.RESTORE_ERRORS as exc:
        _fail(f"db restore {args.file} failed: {db_restore.first_line(exc)}", EXIT_FAILURE)
    print(db_restore.summary(restored))


def _fail(message: str, status: int) -> NoReturn:
    print(f"herald: {message}", file=sys.stderr)
    raise SystemExit(status)
