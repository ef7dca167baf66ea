"""The scheduler role: each tick of a job runs once among any number of schedulers, a run a
dead scheduler left behind completes once on another, and jobs can be run by hand over HTTP
and watched."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg

from commands.jobs.handlers import RunJobNow, run_job_now
from domain.identity.roles import Role
from infrastructure.eventstore import catalog
from infrastructure.eventstore.store import EventStore
from infrastructure.migrations import migrate
from infrastructure.settings import Settings
from tests.conftest import on_own_database
from tests.e2e.conftest import AccountFactory
from tests.kafka_helpers import eventually

NEVER = "0 0 1 1 *"  # once a year: a job the test does not want firing


def _settings(stack: Settings, database_url: str, cleanup: str = NEVER) -> Settings:
    own = on_own_database(stack, database_url)
    schedules = (
        f"archive={NEVER}; cleanup={cleanup}; warm-read-models={NEVER}; verify-sample={NEVER}"
    )
    return msgspec.structs.replace(own, job_schedules=schedules, scheduler_poll_s=0.5)


@contextmanager
def _schedulers(
    settings: Settings, count: int, logs: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    environ = {**os.environ, **settings.to_environ()}
    started = []
    for index in range(count):
        log = (logs / f"scheduler-{index}.log").open("wb")
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "infrastructure.entrypoints.cli", "serve", "scheduler"],
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _runs(database_url: str, job: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        cursor = conn.execute(
            "SELECT tick, attempts, outcome, runner, started_at, finished_at, counts"
            " FROM job_runs WHERE job = %s ORDER BY tick",
            (job,),
        )
        names = [c.name for c in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_each_tick_runs_once_among_two_schedulers(
    stack: Settings, fresh_database: str, tmp_path: Path
) -> None:
    migrate(fresh_database)
    settings = _settings(stack, fresh_database, cleanup="*/2 * * * * *")
    with _schedulers(settings, 2, tmp_path):

        def four_done() -> bool:
            return sum(1 for r in _runs(fresh_database, "cleanup") if r["finished_at"]) >= 4

        eventually(four_done, 40, "four ticks of the cleanup job")
    done = [r for r in _runs(fresh_database, "cleanup") if r["finished_at"]]
    assert all(r["attempts"] == 1 and r["outcome"] == "succeeded" for r in done), done
    ticks = [r["tick"] for r in done]
    assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(ticks)), ticks
    assert all(r["counts"].keys() >= {"idempotency_keys", "dispatch_queue_rows"} for r in done)


def test_a_scheduler_killed_mid_job_leaves_the_run_to_the_other(
    stack: Settings, fresh_database: str, tmp_path: Path
) -> None:
    migrate(fresh_database)
    settings = _settings(stack, fresh_database)
    store = EventStore(fresh_database, catalog.codec(), pool_size=1)
    with (
        psycopg.connect(fresh_database) as blocker,
        _schedulers(settings, 2, tmp_path) as schedulers,
    ):
        # The cleanup job blocks on this lock, mid-run, until the test lets go.
        blocker.execute("LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE")
        run_job_now(
            RunJobNow(tenant_id="ops", job="cleanup", requested_by="test"),
            store=store,
            schedules=settings.schedules,
        )
        eventually(lambda: bool(_runs(fresh_database, "cleanup")[0]["started_at"]), 30, "a start")
        (started,) = _runs(fresh_database, "cleanup")
        pids = {p.pid: p for p in schedulers}
        first = int(started["runner"].rsplit(":", 1)[1])
        assert first in pids
        os.kill(first, signal.SIGKILL)
        pids[first].wait(timeout=10)
        blocker.rollback()

        def finished() -> bool:
            return _runs(fresh_database, "cleanup")[0]["finished_at"] is not None

        eventually(finished, 30, "the other scheduler to finish the run")
    store.close()
    (run,) = _runs(fresh_database, "cleanup")
    assert run["outcome"] == "succeeded"
    assert run["attempts"] == 2
    assert int(run["runner"].rsplit(":", 1)[1]) != first


def test_a_job_run_by_hand_is_audited_and_shows_in_the_job_list(  # noqa: PLR0917 - fixtures
    api_url: str,
    account: AccountFactory,
    projector: None,
    stack: Settings,
    api_settings: Settings,
    tmp_path: Path,
) -> None:
    operator = account(Role.OPERATOR)
    missing = httpx.post(f"{api_url}/admin/jobs/nightly/run", headers=operator.headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    request_id = f"job-{uuid.uuid4().hex}"
    accepted = httpx.post(
        f"{api_url}/admin/jobs/cleanup/run",
        headers={**operator.headers, "X-Request-ID": request_id},
    )
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    listed = httpx.get(f"{api_url}/admin/jobs", headers=operator.headers).json()["jobs"]
    cleanup = next(j for j in listed if j["name"] == "cleanup")
    assert run_id in [r["run_id"] for r in cleanup["pending"]]
    assert cleanup["next_run"] is not None
    assert {j["name"] for j in listed} == {
        "archive",
        "cleanup",
        "warm-read-models",
        "verify-sample",
    }

    assert stack.database_url is not None
    settings = msgspec.structs.replace(
        api_settings,
        job_schedules=(
            f"archive={NEVER}; cleanup={NEVER}; warm-read-models={NEVER}; verify-sample={NEVER}"
        ),
        scheduler_poll_s=0.5,
    )
    with _schedulers(settings, 1, tmp_path):

        def ran() -> bool:
            jobs = httpx.get(f"{api_url}/admin/jobs", headers=operator.headers).json()["jobs"]
            last = next(j for j in jobs if j["name"] == "cleanup")["last_run"]
            return last is not None and last["run_id"] == run_id

        eventually(ran, 30, "the run to finish")
    jobs = httpx.get(f"{api_url}/admin/jobs", headers=operator.headers).json()["jobs"]
    cleanup = next(j for j in jobs if j["name"] == "cleanup")
    assert cleanup["last_run"]["outcome"] == "succeeded"
    assert cleanup["last_run"]["manual"] is True
    assert cleanup["last_success_at"] is not None
    metrics = httpx.get(f"{api_url}/metrics", headers=operator.headers).text
    assert 'herald_job_last_success_timestamp_seconds{job_name="cleanup"}' in metrics

    with psycopg.connect(stack.database_url.reveal()) as conn:

        def audited() -> bool:
            row = conn.execute(
                "SELECT action, actor, details FROM audit_log WHERE request_id = %s", (request_id,)
            ).fetchone()
            conn.rollback()
            return row is not None

        eventually(audited, 30, "the audit entry")
        row = conn.execute(
            "SELECT action, actor, details FROM audit_log WHERE request_id = %s", (request_id,)
        ).fetchone()
    assert row is not None
    assert row[0] == "job.run_requested"
    assert row[1] == operator.user_id
    assert row[2]["job"] == "cleanup"
