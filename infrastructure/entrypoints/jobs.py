"""The scheduler's jobs, each name wired to the use case that does it.

A job receives its run's context (the tick it runs for is its `now`) and returns what it
did, by its own measures, which `job_runs` keeps and GET /admin/jobs shows.
"""

from __future__ import annotations

from datetime import timedelta

from commands.housekeeping.cleanup import clean_up
from infrastructure.eventstore import catalog
from infrastructure.scheduling.runner import Job, JobContext
from infrastructure.settings import Settings, require_servers
from projections.notifications.sample import verify_sample
from projections.notifications.warming import warm_status_hashes


def scheduled_jobs(settings: Settings) -> dict[str, Job]:
    database_url, redis_url, _ = require_servers(settings)
    codec = catalog.codec()

    def cleanup(context: JobContext) -> dict[str, int]:
        return clean_up(
            database_url=database_url,
            redis_url=redis_url,
            now=context.now,
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_h),
        )

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
