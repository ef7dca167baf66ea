"""`herald projections status|verify|rebuild`: the read models' health, checks and rebuilds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from infrastructure.eventstore import catalog
from infrastructure.eventstore.tracking import AUDIT_PROJECTION, NOTIFICATIONS_PROJECTION, lag
from infrastructure.settings import Settings, require_servers
from projections.audit import verify as audit_verify
from projections.notifications import rebuild as rebuild_model
from projections.notifications import verify as verify_model

# The projections, by the name the CLI takes.
PROJECTIONS = {"notifications": NOTIFICATIONS_PROJECTION, "audit": AUDIT_PROJECTION}
RATE_SAMPLE_S = 1.0


def status(settings: Settings, max_lag: int | None) -> bool:
    """Print each projection's position, the head, the lag and the rate; False if too far behind."""
    database_url, _, _ = require_servers(settings)
    first = {name: lag(database_url, name) for name in PROJECTIONS.values()}
    time.sleep(RATE_SAMPLE_S)
    healthy = True
    for name, (before, _) in first.items():
        position, head = lag(database_url, name)
        rate = (position - before) / RATE_SAMPLE_S
        print(
            f"{name}: position {position}, head of the log {head}, lag {head - position},"
            f" {rate:,.0f} events/s"
        )
        if max_lag is not None and head - position > max_lag:
            healthy = False
    return healthy


@contextmanager
def _bar(description: str) -> Iterator[Callable[[int, int], None]]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=None, rate="-")
        started = time.monotonic()

        def update(done: int, total: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=done, total=total, rate=f"{done / elapsed:,.0f}")

        yield update


def verify(settings: Settings, name: str) -> bool:
    database_url, redis_url, _ = require_servers(settings)
    with _bar(f"replaying {name}") as progress:
        if name == "audit":
            report = audit_verify.verify(database_url, catalog.codec_for(settings), progress)
        else:
            report = verify_model.verify(
                database_url,
                redis_url,
                namespace=settings.namespace,
                codec=catalog.codec_for(settings),
                names=list(catalog.NOTIFICATION_EVENT_NAMES),
                progress=progress,
            )
    print(f"{name}: compared up to position {report.position}")
    if report.changed_since:
        print(f"  {report.changed_since} notification(s) changed since then; left out")
    if report.outlived:
        print(
            f"  {report.outlived} row(s) from before events were removed by retention:"
            " checked to hold every row a replay makes"
        )
    for comparison in report.comparisons:
        verdict = "same" if comparison.equal else "DIFFERENT"
        print(
            f"  {comparison.name}: {verdict} (live {comparison.live},"
            f" replayed {comparison.replayed})"
        )
        for line in comparison.differing:
            print(f"    {line}")
    return report.ok


def rebuild(settings: Settings, name: str) -> None:
    database_url, redis_url, _ = require_servers(settings)
    with _bar(f"rebuilding {name}") as progress:
        position = rebuild_model.rebuild(
            database_url,
            catalog.codec_for(settings),
            list(catalog.NOTIFICATION_EVENT_NAMES),
            progress=progress,
            redis_target=(redis_url, settings.namespace),
        )
    print(f"{name}: rebuilt up to position {position} and swapped in, Redis models refilled")
