"""The scheduler's jobs, each name wired to the use case that does it.

A job receives its run's context (the tick it runs for is its `now`) and returns what it
did, by its own measures, which `job_runs` keeps and GET /admin/jobs shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial

import redis

from commands.exports.jobs import ExportJobs, expire_exports
from commands.housekeeping.cleanup import clean_up
from commands.privacy.copies import erase_from_copies
from commands.privacy.eraser import Eraser
from commands.retention.archival import Archival
from infrastructure.archives.files import ArchiveFiles
from infrastructure.eventstore import catalog
from infrastructure.eventstore.store import EventStore
from infrastructure.privacy.erasure_record import ErasureRecord
from infrastructure.providers.registry import message_deleters
from infrastructure.redis_keys import RedisKeys
from infrastructure.scheduling.runner import Job, JobContext
from infrastructure.settings import Settings, SettingsError, require_servers
from projections.exports.exporter import open_export
from projections.notifications.sample import verify_sample
from projections.notifications.warming import warm_status_hashes


def scheduled_jobs(settings: Settings) -> dict[str, Job]:
    database_url, redis_url, _ = require_servers(settings)
    codec = catalog.codec_for(settings)

    archival = archival_for(settings)

    def archive(context: JobContext) -> dict[str, int]:
        runs = archival.run(
            now=context.now,
            run_id=context.run.run_id,
            tenant=context.run.tenant_id,
            requested_by=context.run.requested_by,
        )
        return {
            "tenants": len(runs),
            "archived": sum(r.archived for r in runs),
            "files": sum(len(r.files) for r in runs),
            "bytes": sum(r.bytes for r in runs),
            "events_removed": sum(r.events_removed for r in runs),
        }

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

    return {
        "archive": archive,
        "cleanup": cleanup,
        "warm-read-models": warm,
        "verify-sample": sample,
    }


def archival_for(settings: Settings) -> Archival:
    database_url, _, _ = require_servers(settings)
    return Archival(
        database_url=database_url,
        codec=catalog.codec_for(settings),
        files=ArchiveFiles(settings.archive_path),
        default_retention=settings.default_retention,
    )


@contextmanager
def polled_work(settings: Settings) -> Iterator[list[Callable[[], object]]]:
    """What each scheduler poll also does: write waiting export jobs, carry out erasures."""
    database_url, redis_url, _ = require_servers(settings)
    codec = catalog.codec_for(settings)
    store = EventStore(database_url, codec, pool_size=1)
    client = redis.Redis.from_url(redis_url)
    exports = ExportJobs(
        database_url=database_url,
        exporter=partial(
            open_export, database_url, codec, archives=ArchiveFiles(settings.archive_path)
        ),
        store=store,
        directory=settings.export_path,
        ttl=timedelta(hours=settings.export_ttl_h),
    )
    eraser = eraser_for(settings, store, client)
    try:
        yield [exports.run_waiting, eraser.run_waiting]
    finally:
        client.close()
        store.close()


def eraser_for(settings: Settings, store: EventStore, client: redis.Redis) -> Eraser:
    database_url, _, _ = require_servers(settings)
    sealer = store.codec.sealer
    if sealer is None:
        raise SettingsError("HERALD_MASTER_KEY", "is needed to erase: erasure destroys keys")
    return Eraser(
        database_url=database_url,
        redis_client=client,
        keys=RedisKeys(settings.namespace),
        store=store,
        keyring=sealer.keyring,
        record=ErasureRecord(settings.erasure_record_path),
        copies=partial(erase_from_copies, archives=ArchiveFiles(settings.archive_path)),
        deleters=message_deleters(settings),
        key_cache_s=settings.key_cache_s,
        # A notification with a provider now is let finish, at most as long as its lease.
        settle_timeout_s=settings.dispatch_lease_s,
    )
