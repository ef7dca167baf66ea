"""The `job_runs` table: a row per job and tick, claimed once across all schedulers.

A scheduler runs a job's unfinished rows holding the job's PostgreSQL advisory lock on the
connection it runs with. The lock is the liveness of the run: while its scheduler lives,
nobody else starts the job; when it dies, even by kill -9, the server drops the connection
and the lock with it, and the next scheduler to look finds the row unfinished and runs it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb
from uuid_utils.compat import uuid7

_REQUEST = """
INSERT INTO job_runs (run_id, job, tick, manual, requested_by, tenant_id)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (job, tick) DO NOTHING
"""
_NEXT = """
SELECT run_id, tick, manual, requested_by, tenant_id FROM job_runs
WHERE job = %s AND finished_at IS NULL ORDER BY tick LIMIT 1
"""
_START = """
UPDATE job_runs SET runner = %s, started_at = now(), attempts = attempts + 1
WHERE run_id = %s
"""
_FINISH = """
UPDATE job_runs SET finished_at = now(), outcome = %s, counts = %s, error = %s
WHERE run_id = %s
"""
_PENDING_JOBS = "SELECT DISTINCT job FROM job_runs WHERE finished_at IS NULL"
# Each job's last success, and the counts of its last finished run: for metrics.
LAST_SUCCESSES = """
SELECT job, max(finished_at) FROM job_runs WHERE outcome = 'succeeded' GROUP BY job
"""
LAST_COUNTS = """
SELECT DISTINCT ON (job) job, counts FROM job_runs
WHERE finished_at IS NOT NULL ORDER BY job, finished_at DESC
"""


@dataclass(frozen=True)
class Run:
    run_id: UUID
    job: str
    tick: datetime
    manual: bool
    requested_by: str | None = None
    tenant_id: str | None = None  # a run for one tenant only; None for all


def lock_key(job: str) -> int:
    """The advisory-lock key of a job: stable across processes and releases."""
    return int.from_bytes(hashlib.sha256(f"herald-job:{job}".encode()).digest()[:8], "big") >> 1


def request_write(
    run_id: UUID, job: str, tick: datetime, requested_by: str, tenant_id: str | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The statement that asks for a run by hand (for `tenant_id` only, when given), to
    commit with the event that records why."""
    return _REQUEST, (run_id, job, tick, True, requested_by, tenant_id)


def request(
    conn: psycopg.Connection[Any],
    job: str,
    tick: datetime,
    *,
    manual: bool = False,
    requested_by: str | None = None,
) -> UUID:
    """Ask for a run of `job` at `tick`; asking again for the same tick changes nothing."""
    run_id = uuid7()
    conn.execute(_REQUEST, (run_id, job, tick, manual, requested_by, None))
    return run_id


def try_lock(conn: psycopg.Connection[Any], job: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(job),)).fetchone()
    return bool(row and row[0])


def unlock(conn: psycopg.Connection[Any], job: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(job),))


def next_unfinished(conn: psycopg.Connection[Any], job: str) -> Run | None:
    row = conn.execute(_NEXT, (job,)).fetchone()
    return Run(row[0], job, row[1], row[2], row[3], row[4]) if row else None


def start(conn: psycopg.Connection[Any], run: Run, runner: str) -> None:
    conn.execute(_START, (runner, run.run_id))


def finish(
    conn: psycopg.Connection[Any],
    run: Run,
    *,
    counts: dict[str, Any] | None,
    error: str | None = None,
) -> None:
    outcome = "failed" if error is not None else "succeeded"
    conn.execute(_FINISH, (outcome, Jsonb(counts or {}), error, run.run_id))


def jobs_with_unfinished_runs(conn: psycopg.Connection[Any]) -> list[str]:
    return [str(row[0]) for row in conn.execute(_PENDING_JOBS).fetchall()]
