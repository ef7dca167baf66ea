"""`python -m perf archive`: notifications archived per second, all the way (Parquet files
written, NotificationArchived appended, the rows gone from both read models once the running
projector applied them, and the events removed from the log), against exporting the same
rows as Parquet in the same run.

The log holds notifications that were each requested and then cancelled, appended through
the group-commit writer; the relay and the projector (the real roles, as processes) project
them before anything is measured. Archival then runs as of 400 days later, so the default
retention (90 days, events 365) has passed for both.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from uuid_utils.compat import uuid7

from commands.retention.archival import Archival
from domain.notifications import notification as notifications
from domain.notifications.notification import Notification
from domain.notifications.values import Channel
from infrastructure.archives.files import ArchiveFiles
from infrastructure.archives.verify import verify_archives
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore import catalog
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION, stored_position
from infrastructure.eventstore.writer import StreamAppend
from infrastructure.exports.stream import ExportSpec
from perf.harness import machine, servers
from perf.log import append_rounds, requested
from projections.exports.exporter import open_export

TENANT = "perf-archive"


def _fill(database_url: str, count: int) -> list[uuid.UUID]:
    """`count` notifications of one tenant, each requested and then cancelled."""
    now = datetime.now(UTC)
    states: list[Notification] = []
    first: list[StreamAppend] = []
    for i in range(count):
        stream = uuid.uuid4()
        events = requested(
            tenant=TENANT, channel=Channel.EMAIL, recipient=f"user{i % 5000}@example.com", at=now
        )
        states.append(notifications.evolve(None, events[0], stream))
        first.append(StreamAppend(stream, 0, events))

    def cancelled() -> list[StreamAppend]:
        return [
            StreamAppend(n.id, n.version, notifications.cancel(n, by="perf", reason=None, at=now))
            for n in states
        ]

    append_rounds(database_url, [lambda: first, cancelled])
    return [n.id for n in states]


def _wait_projected(database_url: str, timeout_s: float = 600) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        head = conn.execute("SELECT max(notification_id) FROM stored_events").fetchone()
        target = int(head[0]) if head and head[0] else 0
        deadline = time.monotonic() + timeout_s
        while stored_position(conn, NOTIFICATIONS_PROJECTION) < target:
            if time.monotonic() > deadline:
                raise RuntimeError("the projector did not reach the head of the log")
            time.sleep(0.2)


def _export_rate(database_url: str, archives: ArchiveFiles) -> tuple[float, int]:
    spec = ExportSpec(kind="notifications", format="parquet", tenant=TENANT)
    started = time.perf_counter()
    stream = open_export(database_url, catalog.codec(), spec, archives)
    for _chunk in stream:
        pass
    rows = stream.rows or 0
    return rows / (time.perf_counter() - started), rows


def _left(database_url: str, ids: list[uuid.UUID]) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM notification_view WHERE tenant_id = %s", (TENANT,)
        ).fetchone()
        events = conn.execute(
            "SELECT count(*) FROM stored_events WHERE originator_id = ANY(%s)", (ids,)
        ).fetchone()
    return (int(rows[0]) if rows else -1), (int(events[0]) if events else -1)


def run(quick: bool) -> dict[str, Any]:
    count = 50_000 if quick else 200_000
    with (
        servers() as settings,
        Supervisor() as roles,
        tempfile.TemporaryDirectory(prefix="herald-archive-") as scratch,
    ):
        assert settings.database_url is not None  # noqa: S101 - servers() set it
        database_url = settings.database_url.reveal()
        archives = ArchiveFiles(Path(scratch))
        ids = _fill(database_url, count)
        roles.start(role_spec("relay", settings))
        roles.start(role_spec("projector", settings))
        _wait_projected(database_url)
        export_rate, exported = _export_rate(database_url, archives)
        if exported != count:
            raise RuntimeError(f"the export held {exported} rows, not {count}")
        archival = Archival(
            database_url=database_url,
            codec=catalog.codec(),
            files=archives,
            default_retention=settings.default_retention,
            wait_for_followers_s=600,
        )
        started = time.perf_counter()
        (done,) = archival.run(
            now=datetime.now(UTC) + timedelta(days=400), run_id=uuid7(), tenant=TENANT
        )
        elapsed = time.perf_counter() - started
        rows_left, events_left = _left(database_url, ids)
        check = verify_archives(database_url, archives)
    if (done.archived, rows_left, events_left) != (count, 0, 0) or not check.ok:
        raise RuntimeError(
            f"archived {done.archived} of {count}; {rows_left} rows and {events_left} events"
            f" left; archives: {check.problems[:3]}"
        )
    rate = count / elapsed
    return {
        "scenario": "archive",
        "value": round(rate, 1),
        "unit": "notifications/s archived (Parquet, read models and events removed)",
        "baseline": round(export_rate, 1),
        "ratio": round(rate / export_rate, 3),
        "baseline_is": "rows/s of a Parquet export of the same rows",
        "notifications": count,
        "files": len(done.files),
        "archive_bytes": done.bytes,
        "events_removed": done.events_removed,
        "seconds": round(elapsed, 2),
        "phases_s": {phase: round(spent, 2) for phase, spent in done.seconds.items()},
        "machine": machine(),
    }
