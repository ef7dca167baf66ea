"""`herald gdpr verify`: search every store for what an erasure must have left unreadable;
`herald gdpr encrypt-existing`: seal what was stored before sealing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import psycopg
import redis
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from commands.privacy.sealing import Sealed
from commands.privacy.sealing import encrypt_existing as seal_existing
from infrastructure.eventstore import catalog
from infrastructure.privacy.leaks import Finding, Search
from infrastructure.settings import Settings, require_servers


def needles(subject: str, also: Iterable[str]) -> list[str]:
    """What to look for: the subject as given and, for an address, as commands store it."""
    found = [subject, *also]
    if "@" in subject:
        found.append(subject.strip().lower())
    return found


def verify(
    settings: Settings, subject: str, also: list[str], logs: list[Path]
) -> tuple[list[Finding], list[str]]:
    """Every place the subject or the given texts are still readable; and what was searched."""
    database_url, redis_url, bootstrap = require_servers(settings)
    roots = [settings.export_path, settings.archive_path, *logs]
    default_logs = settings.dev_path / "logs"
    if not logs and default_logs.is_dir():
        roots.append(default_logs)
    columns = (TextColumn("searching {task.description}"), SpinnerColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("", total=None)
        search = Search(
            needles(subject, also),
            progress=lambda what, count: bar.update(task, description=f"{what} ({count})"),
        )
        findings: list[Finding] = []
        with psycopg.connect(database_url, autocommit=True) as conn:
            findings += search.event_store(conn)
            findings += search.sql(conn)
        client = redis.Redis.from_url(redis_url)
        try:
            findings += search.redis(client)
        finally:
            client.close()
        findings += search.kafka(bootstrap)
        findings += search.files(root for root in roots if root.exists())
    searched = [
        "the event store (events and metadata, as stored)",
        "every SQL table",
        "every Redis key and value",
        "every Kafka topic",
        *(f"files under {root}" for root in roots if root.exists()),
    ]
    return findings, searched


def encrypt_existing(settings: Settings, batch: int) -> Sealed:
    database_url, _, _ = require_servers(settings)
    codec = catalog.codec_for(settings)
    columns = (TextColumn("sealing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("seal", total=None)
        return seal_existing(
            database_url,
            codec,
            batch=batch,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
