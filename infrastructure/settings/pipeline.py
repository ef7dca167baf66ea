"""Settings of the data pipeline and its scheduler: when each job runs, and how long things
are kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from apscheduler.triggers.cron import CronTrigger

from domain.errors import InvalidValueError
from domain.retention import RetentionPolicy, check_policy
from infrastructure.settings.dispatch import DispatchSettings
from infrastructure.settings.values import SettingsError, env_name, example_of, setting


@dataclass(frozen=True)
class JobDefault:
    cron: str  # UTC; five fields, or six with seconds first
    description: str


# Every scheduled job, by name, with its default schedule; HERALD_JOB_SCHEDULES overrides.
JOB_DEFAULTS = {
    "archive": JobDefault(
        "0 2 * * *",
        "archives final notifications past their tenant's retention (HERALD_RETENTION_*, or "
        "the tenant's own) to Parquet, and removes their events past the events' retention",
    ),
    "cleanup": JobDefault(
        "5 * * * *",
        "removes idempotency keys past HERALD_IDEMPOTENCY_TTL_H, dispatch-queue rows with "
        "nothing left to do, refresh tokens of revoked logins, and expired export files",
    ),
    "warm-read-models": JobDefault(
        "*/10 * * * *",
        "refills the Redis read models of tenants active in the last hour",
    ),
    "verify-sample": JobDefault(
        "30 3 * * *",
        "replays a sample of notifications and reports any drift of the read models",
    ),
}


def cron_trigger(cron: str) -> CronTrigger:
    """A UTC trigger from crontab fields (minute hour day month weekday), with an optional
    seconds field first; raises ValueError saying what is wrong."""
    fields = cron.split()
    if len(fields) == 5:  # noqa: PLR2004 - crontab's own shape
        return CronTrigger.from_crontab(cron, timezone="UTC")
    if len(fields) == 6:  # noqa: PLR2004 - with seconds first
        second, minute, hour, day, month, weekday = fields
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=weekday,
            timezone="UTC",
        )
    raise ValueError(f"{cron!r} has {len(fields)} fields; a schedule has 5, or 6 with seconds")


def parse_schedules(text: str) -> dict[str, str]:
    """'cleanup=0 * * * *; verify-sample=0 4 * * *' -> {job: cron}; names must be known."""
    found: dict[str, str] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, cron = part.partition("=")
        name, cron = name.strip(), cron.strip()
        if not sep:
            raise ValueError(f"{part!r} is not job=schedule")
        if name not in JOB_DEFAULTS:
            raise ValueError(f"{name!r} is not one of {', '.join(JOB_DEFAULTS)}")
        cron_trigger(cron)
        found[name] = cron
    return found


class PipelineSettings(DispatchSettings, frozen=True, kw_only=True):
    job_schedules: Annotated[
        str,
        setting(
            "Schedules (UTC, crontab fields, optionally seconds first) that replace a job's "
            "default, separated by semicolons. Jobs: " + ", ".join(JOB_DEFAULTS) + ".",
            "cleanup=0 * * * *; verify-sample=0 4 * * *",
        ),
    ] = ""
    scheduler_poll_s: Annotated[
        float,
        setting(
            "How often a scheduler looks for runs to take over (a run requested by hand, or "
            "one whose scheduler died), in seconds.",
            "5",
            ge=0.2,
            le=300,
        ),
    ] = 5.0
    idempotency_ttl_h: Annotated[
        int,
        setting(
            "How long an Idempotency-Key is remembered, in hours; the cleanup job forgets it "
            "after that.",
            "24",
            ge=1,
            le=8760,
        ),
    ] = 24
    export_dir: Annotated[
        str | None,
        setting(
            "Where export jobs write their files, shared by the schedulers that write them "
            "and the API that serves them. Unset: HERALD_DEV_DIR/exports.",
            "/var/lib/herald/exports",
        ),
    ] = None
    export_ttl_h: Annotated[
        int,
        setting(
            "How long an export job's file can be downloaded, in hours; the cleanup job "
            "deletes it after that.",
            "24",
            ge=1,
            le=8760,
        ),
    ] = 24
    retention_notifications_days: Annotated[
        int,
        setting(
            "Default retention of a tenant's final notifications in the read models, in days; "
            "PUT /data-pipeline/retention sets a tenant's own.",
            "90",
        ),
    ] = 90
    retention_events_days: Annotated[
        int,
        setting(
            "Default retention of archived notifications' events in the event store, in days.",
            "365",
        ),
    ] = 365
    archive_dir: Annotated[
        str | None,
        setting(
            "Where archival writes its Parquet files, by tenant and day, each with a "
            "manifest. Unset: HERALD_DEV_DIR/archive.",
            "/var/lib/herald/archive",
        ),
    ] = None
    backup_dir: Annotated[
        str | None,
        setting(
            "Where `herald db backup` writes its timestamped dumps. Unset: HERALD_DEV_DIR/backups.",
            "/var/lib/herald/backups",
        ),
    ] = None
    backup_keep: Annotated[
        int,
        setting("How many of the newest backups `herald db backup` keeps.", "7", ge=1, le=1000),
    ] = 7
    erasure_record_dir: Annotated[
        str | None,
        setting(
            "Where erasures are recorded outside the database (erasures.jsonl, appended and "
            "synced as each erasure destroys keys), for `herald db restore` to destroy their "
            "keys again. Keep it beside the backups, on storage that outlives the database, "
            "mounted by every scheduler. Unset: HERALD_DEV_DIR/erasure-record.",
            "/var/lib/herald/erasure-record",
        ),
    ] = None
    verify_sample_size: Annotated[
        int,
        setting("Notifications the nightly verify-sample job replays.", "1000", ge=1, le=1000000),
    ] = 1000

    def check_pipeline(self) -> None:
        try:
            parse_schedules(self.job_schedules)
        except ValueError as exc:
            raise SettingsError(
                "HERALD_JOB_SCHEDULES",
                f"is invalid: {exc}",
                example_of(PipelineSettings, "job_schedules"),
            ) from None
        try:
            check_policy(self.default_retention)
        except InvalidValueError as exc:
            name = f"retention_{exc.field}"
            raise SettingsError(
                env_name(name), exc.reason, example_of(PipelineSettings, name)
            ) from None

    @property
    def default_retention(self) -> RetentionPolicy:
        return RetentionPolicy(
            notifications_days=self.retention_notifications_days,
            events_days=self.retention_events_days,
        )

    @property
    def archive_path(self) -> Path:
        if self.archive_dir is None:
            return self.dev_path / "archive"
        return Path(self.archive_dir).expanduser().resolve()

    @property
    def backup_path(self) -> Path:
        if self.backup_dir is None:
            return self.dev_path / "backups"
        return Path(self.backup_dir).expanduser().resolve()

    @property
    def erasure_record_path(self) -> Path:
        if self.erasure_record_dir is None:
            return self.dev_path / "erasure-record"
        return Path(self.erasure_record_dir).expanduser().resolve()

    @property
    def export_path(self) -> Path:
        if self.export_dir is None:
            return self.dev_path / "exports"
        return Path(self.export_dir).expanduser().resolve()

    @property
    def schedules(self) -> dict[str, str]:
        """Every job's schedule: its default, unless overridden."""
        chosen = {name: job.cron for name, job in JOB_DEFAULTS.items()}
        chosen.update(parse_schedules(self.job_schedules))
        return chosen
