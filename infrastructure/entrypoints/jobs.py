"""The scheduler's jobs, each name wired to the use case that does it.

A job receives its run's context (the tick it runs for is its `now`) and returns what it
did, by its own measures, which `job_runs` keeps and GET /admin/jobs shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial

from commands.exports.jobs import ExportJobs, expire_exports
from commands.housekeeping.cleanup import clean_up
from infrastructure.eventstore import catalog
from infrastructure.eventstore.store import EventStore
from infrastructure.scheduling.runner import Job, JobContext
from infrastructure.settings import Settings, require_servers
from projections.exports.exporter import open_export
from projections.notifications.sample import verify_sample
from projections.notifications.warming import warm_status_hashes


def scheduled_jobs(settings: Settings) -> dict[str, Job]:
    database_url, redis_url, _ = require_servers(settings)
    codec = catalog.codec()

    def cleanup(context: JobContext) -> dict[str, int]:
        counts = clean_up(
            database_url=database_url,
            redis_url=redis_url,
            now=context.now,
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_h),
        )
        counts["export_files"] = expire_exports(database_url=database_url, now=context.now)
        return counts

    def warm(context: JobContext) -> dict[str, int]:
        return warm_status_hashes(
            database_url=database_url,
            redis_url=redis_url,
            namespace=settings.namespace,
            now=context.now,
        )

    def sample(_context: JobContext) -> dict[str, int]:
        return verify_sample(
            database_url=database_url, codec=codec, size=settings.verify_sample_size
        )

    return {"cleanup": cleanup, "warm-read-models": warm, "verify-sample": sample}


@contextmanager
def polled_work(settings: Settings) -> Iterator[list[Callable[[], object]]]:
    """What each scheduler poll also does: write waiting export jobs."""
    database_url, _, _ = require_servers(settings)
    codec = catalog.codec()
    store = EventStore(database_url, codec, pool_size=1)
    exports = ExportJobs(
        database_url=database_url,
        exporter=partial(open_export, database_url, codec),
        store=store,
        directory=settings.export_path,
        ttl=timedelta(hours=settings.export_ttl_h),
    )
    try:
        yield [exports.run_waiting]
    finally:
        store.close()
