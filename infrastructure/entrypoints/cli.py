"""The `herald` command line: dev stack, roles, migrations and topics.

Bad input ends with one line naming the value and what is wrong, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from infrastructure.entrypoints.db_commands import add_db_commands, db_command
from infrastructure.entrypoints.gdpr_commands import add_gdpr_commands, gdpr_command
from infrastructure.entrypoints.roles import ROLES, require_role_settings
from infrastructure.log import configure_logging
from infrastructure.settings import (
    MissingServerError,
    Settings,
    SettingsError,
    load_settings,
    require_servers,
)

EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="herald", description="Event-sourced notification backend.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser(
        "dev",
        help="run everything locally; servers without a configured URL are started embedded",
    )
    serve = sub.add_parser("serve", help="run one role against the configured servers")
    serve.add_argument("role", choices=sorted(ROLES), help="the role to run")
    sub.add_parser(
        "simulate-providers",
        help="serve the provider simulator (SendGrid, Twilio, FCM) on HERALD_SIMULATOR_URL",
    )
    sub.add_parser("migrate", help="apply pending SQL migrations to HERALD_DATABASE_URL")
    sub.add_parser("topics", help="create missing Kafka topics on HERALD_KAFKA_BOOTSTRAP")
    relay = sub.add_parser("relay", help="manage the outbox relay's position")
    relay_sub = relay.add_subparsers(dest="relay_command", required=True, parser_class=_Parser)
    reset = relay_sub.add_parser(
        "reset", help="publish again from POSITION (exclusive), e.g. after a broker lost data"
    )
    reset.add_argument("--from", dest="position", type=int, required=True, metavar="POSITION")
    status = relay_sub.add_parser(
        "status", help="the relay's position, the head of the log and the lag between them"
    )
    status.add_argument(
        "--max-lag",
        type=int,
        default=None,
        metavar="EVENTS",
        help="exit 1 when more than EVENTS positions are waiting (for health checks)",
    )
    projections = sub.add_parser(
        "projections", help="inspect, verify and rebuild the read-model projections"
    )
    projections_sub = projections.add_subparsers(
        dest="projections_command", required=True, parser_class=_Parser
    )
    projections_status = projections_sub.add_parser(
        "status", help="each projection's position, the head of the log and the lag"
    )
    projections_status.add_argument(
        "--max-lag",
        type=int,
        default=None,
        metavar="EVENTS",
        help="exit 1 when any projection is more than EVENTS positions behind",
    )
    for command, text, names in (
        (
            "verify",
            "replay the log into a scratch copy and compare digests with the live read models;"
            " exit 1 on any difference",
            ["notifications", "audit"],
        ),
        (
            "rebuild",
            "replay the log into shadow tables, catch up, and swap them in atomically",
            ["notifications"],
        ),
    ):
        projection = projections_sub.add_parser(command, help=text)
        projection.add_argument("name", choices=names, help="the projection")
    export = sub.add_parser(
        "export",
        help="write an export of one tenant, consistent at one log position, with a manifest",
    )
    export.add_argument("kind", choices=["notifications", "events", "audit-logs"])
    export.add_argument("--format", choices=["csv", "ndjson", "json", "parquet"], default="csv")
    export.add_argument("--out", type=Path, required=True, metavar="FILE")
    export.add_argument("--tenant", default="default", help="the tenant (default: %(default)s)")
    export.add_argument("--from", dest="start", type=_time, metavar="TIME", help="RFC 3339")
    export.add_argument("--to", dest="end", type=_time, metavar="TIME", help="RFC 3339")
    export.add_argument("--status", help="notifications in this status")
    export.add_argument("--channel", choices=["email", "sms", "push"])
    export.add_argument("--action", help="audit entries of this action")
    export.add_argument("--actor", help="audit entries of this actor")
    export.add_argument("--position", type=int, metavar="N", help="as of this log position")
    export.add_argument("--include-archived", action="store_true")
    archive = sub.add_parser("archive", help="archival: run it now, verify archives, restore one")
    archive_sub = archive.add_subparsers(
        dest="archive_command", required=True, parser_class=_Parser
    )
    archive_run = archive_sub.add_parser(
        "run", help="archive what is past retention now (or as of --at), like the nightly job"
    )
    archive_run.add_argument(
        "--at", type=_time, metavar="TIME", help="measure retention from this time (RFC 3339)"
    )
    archive_run.add_argument("--tenant", help="only this tenant (default: every tenant)")
    archive_run.add_argument(
        "--dry-run", action="store_true", help="count what would be archived; change nothing"
    )
    archive_sub.add_parser(
        "verify", help="check every archive against its manifest and hash; exit 1 on a problem"
    )
    archive_restore = archive_sub.add_parser(
        "restore", help="bring an archive's notifications back; running it twice changes nothing"
    )
    archive_restore.add_argument("file", metavar="FILE", help="the archive, under the archive dir")
    jobs = sub.add_parser("jobs", help="the scheduled jobs")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, parser_class=_Parser)
    jobs_sub.add_parser(
        "status", help="each job's schedule, last run and next run; fails if the database is away"
    )
    add_gdpr_commands(sub, _Parser)
    add_db_commands(sub, _Parser)
    _add_users(sub)
    return parser


def _add_users(sub: Any) -> None:
    users = sub.add_parser("users", help="manage users directly in the event store")
    users_sub = users.add_subparsers(dest="users_command", required=True, parser_class=_Parser)
    admin = users_sub.add_parser(
        "create-admin",
        help="register an admin; the password is read from a prompt, or from stdin when piped",
    )
    admin.add_argument("--email", required=True, help="the admin's email address")
    admin.add_argument("--tenant", default="default", help="the tenant (default: %(default)s)")


def _fail(message: str, status: int = EXIT_USAGE) -> NoReturn:
    print(f"herald: {message}", file=sys.stderr)
    raise SystemExit(status)


def run(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        _fail(str(exc))
    configure_logging(settings, role=args.command if args.command != "serve" else args.role)
    if args.command == "simulate-providers":
        _simulate_providers(settings)
    else:
        _dispatch(args, settings)


def _simulate_providers(settings: Settings) -> None:
    from infrastructure.simulator import serve_simulator  # noqa: PLC0415

    try:
        serve_simulator(settings)
    except SettingsError as exc:
        _fail(str(exc))


def _dispatch(args: argparse.Namespace, settings: Settings) -> None:
    # Imports are local so that each command loads only what it uses.
    from domain.errors import DomainError  # noqa: PLC0415
    from infrastructure.devstack import EmbeddedUnavailableError  # noqa: PLC0415
    from infrastructure.devstack.dev import (  # noqa: PLC0415
        DevDirBusyError,
        run_dev,
        with_running_dev_stack,
    )
    from infrastructure.devstack.supervisor import ChildFailedError  # noqa: PLC0415
    from infrastructure.migrations import MigrationError  # noqa: PLC0415

    if args.command in _ON_SERVERS:
        settings = with_running_dev_stack(settings)
    try:
        if args.command == "dev":
            run_dev(settings)
        elif args.command == "serve":
            require_role_settings(args.role, settings)
            ROLES[args.role](settings)
        else:
            _ON_SERVERS[args.command](args, settings)
    except SettingsError as exc:
        _fail(str(exc))
    except MissingServerError as exc:
        _fail(f"{exc} is not set; `herald {args.command}` needs it (or use `herald dev`)")
    except (MigrationError, DevDirBusyError, EmbeddedUnavailableError, DomainError) as exc:
        _fail(str(exc))
    except ChildFailedError as exc:
        _fail(str(exc), status=EXIT_FAILURE)


def _migrate_command(_args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.migrations import migrate  # noqa: PLC0415

    database_url, _, _ = require_servers(settings)
    applied = migrate(database_url)
    print(f"{len(applied)} migration(s) applied")


def _topics_command(_args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.kafka.topics import ensure_topics, topic_layout  # noqa: PLC0415

    _, _, bootstrap = require_servers(settings)
    created = ensure_topics(bootstrap, topic_layout(settings.namespace, settings.kafka_partitions))
    print(f"topics created: {', '.join(created) or 'none (all exist)'}")


def _users_command(args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.entrypoints.admin_users import create_admin  # noqa: PLC0415

    database_url, _, _ = require_servers(settings)
    user_id = create_admin(settings, database_url, email=args.email, tenant=args.tenant)
    print(f"admin {args.email} created in tenant {args.tenant} (id {user_id})")


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _export_command(args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.entrypoints import export_cli  # noqa: PLC0415
    from infrastructure.exports.stream import (  # noqa: PLC0415
        ExportSpec,
        PositionNotReachedError,
    )

    if args.start and args.end and args.start > args.end:
        _fail(f"--from {args.start.isoformat()}: must not be after --to")
    if args.position is not None and args.position < 0:
        _fail(f"--position {args.position}: a position is 0 or more")
    if not args.out.parent.is_dir():
        _fail(f"--out {args.out}: {args.out.parent} is not a directory")
    spec = ExportSpec(
        kind=args.kind,
        format=args.format,
        tenant=args.tenant,
        start=args.start,
        end=args.end,
        status=args.status,
        channel=args.channel,
        action=args.action,
        actor=args.actor,
        position=args.position,
        include_archived=args.include_archived,
    )
    started = time.monotonic()
    try:
        manifest = export_cli.export(settings, spec, args.out)
    except PositionNotReachedError as exc:
        _fail(f"--position {args.position}: {exc}", status=EXIT_FAILURE)
    print(export_cli.summary(manifest, args.out, started))


def _archive_command(args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.entrypoints import archive_cli  # noqa: PLC0415

    require_servers(settings)
    if args.archive_command == "run":
        at = args.at or datetime.now(UTC)
        runs = archive_cli.run(settings, at=at, tenant=args.tenant, dry_run=args.dry_run)
        for tenant_run in runs:
            if args.dry_run:
                print(
                    f"{tenant_run.tenant_id}: {tenant_run.candidates} notification(s) past"
                    f" retention (requested before {tenant_run.cutoffs.notifications:%Y-%m-%d})"
                )
            else:
                print(
                    f"{tenant_run.tenant_id}: {tenant_run.archived} archived in"
                    f" {len(tenant_run.files)} file(s), {tenant_run.bytes} bytes;"
                    f" {tenant_run.events_removed} event(s) removed"
                )
        if not runs:
            print("no tenant has notifications")
    elif args.archive_command == "verify":
        check = archive_cli.verify(settings)
        for problem in check.problems:
            print(problem)
        print(
            f"{check.files} archive(s), {check.rows} row(s), {check.bytes} bytes:"
            f" {'all verify' if check.ok else f'{len(check.problems)} problem(s)'}"
        )
        if not check.ok:
            raise SystemExit(EXIT_FAILURE)
    else:
        restored = archive_cli.restore(settings, args.file)
        print(
            f"{restored.path}: {restored.restored} of {restored.rows} notification(s) restored"
            f" to tenant {restored.tenant_id}; {restored.left} were back already or archived"
            " again since"
        )


def _jobs_command(_args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.entrypoints import jobs_cli  # noqa: PLC0415

    jobs_cli.status(settings)


def _relay_command(args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.entrypoints import relay_cli  # noqa: PLC0415

    require_servers(settings)
    if args.relay_command == "reset":
        if args.position < 0:
            _fail(f"--from {args.position}: a position is 0 or more")
        relay_cli.reset(settings, args.position)
        return
    if not relay_cli.status(settings, args.max_lag):
        raise SystemExit(EXIT_FAILURE)


def _projections_command(args: argparse.Namespace, settings: Settings) -> None:
    from infrastructure.entrypoints import projections_cli  # noqa: PLC0415

    if args.projections_command == "status":
        healthy = projections_cli.status(settings, args.max_lag)
    elif args.projections_command == "verify":
        healthy = projections_cli.verify(settings, args.name)
    else:
        projections_cli.rebuild(settings, args.name)
        healthy = True
    if not healthy:
        raise SystemExit(EXIT_FAILURE)


# Commands that act on the servers: with no URLs set, those of a running `herald dev`.
_ON_SERVERS: dict[str, Callable[[argparse.Namespace, Settings], None]] = {
    "migrate": _migrate_command,
    "topics": _topics_command,
    "users": _users_command,
    "relay": _relay_command,
    "projections": _projections_command,
    "jobs": _jobs_command,
    "archive": _archive_command,
    "export": _export_command,
    "gdpr": gdpr_command,
    "db": db_command,
}


def main() -> None:
    run()


if __name__ == "__main__":
    main()
