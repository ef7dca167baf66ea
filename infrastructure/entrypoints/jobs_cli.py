"""`herald jobs status`: each scheduled job's schedule, last run and next run."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from infrastructure.settings import Settings, require_servers
from infrastructure.settings.pipeline import cron_trigger

_LAST = """
SELECT DISTINCT ON (job) job, finished_at, outcome, counts, error FROM job_runs
WHERE finished_at IS NOT NULL ORDER BY job, finished_at DESC
"""
_PENDING = "SELECT job, count(*) FROM job_runs WHERE finished_at IS NULL GROUP BY job"


def status(settings: Settings) -> None:
    database_url, _, _ = require_servers(settings)
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        last = {row[0]: row[1:] for row in conn.execute(_LAST).fetchall()}
        pending: dict[str, int] = dict(conn.execute(_PENDING).fetchall())
    now = datetime.now(UTC)
    for name, cron in settings.schedules.items():
        upcoming = cron_trigger(cron).get_next_fire_time(None, now)
        line = f"{name}: '{cron}' UTC, next {upcoming:%Y-%m-%d %H:%M:%S}"
        if name in last:
            finished, outcome, counts, error = last[name]
            line += f"; last {outcome} at {finished:%Y-%m-%d %H:%M:%S}"
            line += f" ({error})" if error else f" {counts or {}}"
        else:
            line += "; never run"
        if pending.get(name):
            line += f"; {pending[name]} waiting or running"
        print(line)
