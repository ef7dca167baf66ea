"""The `herald gdpr` commands' arguments, and what each does with them. Light to import: the
searching itself (`gdpr_cli`) is loaded only when a gdpr command runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from infrastructure.settings import Settings

EXIT_FAILURE, EXIT_USAGE = 1, 2


def add_gdpr_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    gdpr = sub.add_parser("gdpr", help="personal data: check that an erasure left nothing")
    gdpr_sub = gdpr.add_subparsers(dest="gdpr_command", required=True, parser_class=parser_class)
    verify = gdpr_sub.add_parser(
        "verify",
        help="search the event store, every SQL table, Redis, every Kafka topic, export and "
        "archive files and log files for SUBJECT in plaintext; exit 0 only if none is found",
    )
    verify.add_argument("subject", metavar="SUBJECT", help="the address (or id) erased")
    verify.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="TEXT",
        help="search for this too, such as a message's content (repeatable)",
    )
    encrypt = gdpr_sub.add_parser(
        "encrypt-existing",
        help="seal the personal fields of events stored before sealing; resumable, and "
        "erasure refuses until it has run",
    )
    encrypt.add_argument(
        "--batch", type=int, default=1000, metavar="N", help="events per transaction (1000)"
    )
    verify.add_argument(
        "--logs",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="a log file or directory of logs to search (repeatable; default: the dev "
        "directory's logs)",
    )


def _fail(message: str) -> None:
    print(f"herald: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def gdpr_command(args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.entrypoints import gdpr_cli  # noqa: PLC0415

    if args.gdpr_command == "encrypt-existing":
        if not 1 <= args.batch <= 100_000:  # noqa: PLR2004 - the documented range
            _fail(f"--batch {args.batch}: must be 1 to 100000 events")
        sealed = gdpr_cli.encrypt_existing(settings, args.batch)
        print(
            f"{sealed.events} event(s) sealed; every event up to position {sealed.through} is "
            f"sealed; {sealed.rows_hashed} read model row(s) given their recipient's keyed hash"
        )
        return
    if not args.subject.strip():
        _fail("SUBJECT '': name the address or id that was erased")
    for path in args.logs:
        if not path.exists():
            _fail(f"--logs {path}: no such file or directory")
    findings, searched = gdpr_cli.verify(settings, args.subject, args.also, args.logs)
    for finding in findings:
        print(f"FOUND in {finding.store}: {finding.where} ({finding.count})")
    print(f"searched {'; '.join(searched)}")
    if findings:
        print(f"{len(findings)} place(s) still hold it in plaintext")
        raise SystemExit(EXIT_FAILURE)
    print("nothing found")
