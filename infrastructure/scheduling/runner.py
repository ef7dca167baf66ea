"""The scheduler role's engine: APScheduler cron triggers (UTC) fire ticks, PostgreSQL decides
who runs each.

When a job's trigger fires, every scheduler process records the tick in `job_runs` (the
first insert wins, the rest change nothing) and then tries to run the job's unfinished
rows under the job's advisory lock (`runs.py`): one process gets it, the others go on. A
poll every HERALD_SCHEDULER_POLL_S takes over runs asked for by hand and runs whose
scheduler died. A job is a function of its run's context that returns what it did, by its
own measures; it must be idempotent, since a run cut short is run again.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from infrastructure.log import get_logger
from infrastructure.scheduling import runs
from infrastructure.settings import Settings, require_servers
from infrastructure.settings.pipeline import cron_trigger

log = get_logger(__name__)

GRACE_S = 60  # a tick fired later than this after its time is skipped, not run late


@dataclass(frozen=True)
class JobContext:
    """What a job run knows: its time (the tick it runs for, never the wall clock, so that
    running it again does the same), and whether someone asked for it by hand."""

    now: datetime
    run: runs.Run
    settings: Settings


Job = Callable[[JobContext], Mapping[str, Any]]


def latest_fire_time(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The tick that fired just now: the latest fire time in (now - grace, now]."""
    fire = trigger.get_next_fire_time(None, now - timedelta(seconds=GRACE_S))
    latest = None
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return latest


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        jobs: Mapping[str, Job],
        pollers: Sequence[Callable[[], object]] = (),
    ) -> None:
        """`pollers` run on every poll too: work asked for outside the schedule (an export
        job), which they must claim themselves."""
        self._settings = settings
        self._pollers = list(pollers)
        self._database_url, _, _ = require_servers(settings)
        self._jobs = dict(jobs)
        self._triggers = {
            name: cron_trigger(cron) for name, cron in settings.schedules.items() if name in jobs
        }
        self.runner = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, stop: threading.Event) -> None:
        """Fire ticks and take over runs until `stop` is set; then let running jobs finish."""
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=len(self._jobs) + 1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": GRACE_S},
        )
        for name, trigger in self._triggers.items():
            scheduler.add_job(self.fire, trigger, args=[name], id=name, name=name)
        scheduler.add_job(
            self.take_over,
            IntervalTrigger(seconds=self._settings.scheduler_poll_s),
            id="take-over",
            name="take over",
        )
        scheduler.start()
        log.info("scheduler started", runner=self.runner, jobs=sorted(self._triggers))
        try:
            stop.wait()
        finally:
            scheduler.shutdown(wait=True)
            log.info("scheduler stopped", runner=self.runner)

    def fire(self, name: str) -> None:
        """A trigger fired: record its tick, then run whatever of the job is due."""
        tick = latest_fire_time(self._triggers[name], datetime.now(UTC))
        if tick is None:
            return
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            runs.request(conn, name, tick)
        self.run_pending(name)

    def take_over(self) -> None:
        """Run what nobody is running: runs asked for by hand, and those of dead schedulers."""
        try:
            with psycopg.connect(self._database_url, autocommit=True) as conn:
                pending = runs.jobs_with_unfinished_runs(conn)
        except psycopg.OperationalError as exc:
            log.warning("scheduler waiting for the database", error=str(exc))
            return
        for name in pending:
            if name in self._jobs:
                self.run_pending(name)
        for poller in self._pollers:
            try:
                poller()
            except Exception:  # one poller's failure must not stop the others, or the next poll
                log.exception("scheduler poll failed", poller=getattr(poller, "__qualname__", ""))

    def run_pending(self, name: str) -> int:
        """Run the job's unfinished runs, oldest first, if no other scheduler is; returns
        how many this call ran."""
        done = 0
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            if not runs.try_lock(conn, name):
                return 0  # another scheduler runs this job now
            try:
                while (run := runs.next_unfinished(conn, name)) is not None:
                    runs.start(conn, run, self.runner)
                    self._run(conn, run)
                    done += 1
            finally:
                runs.unlock(conn, name)
        return done

    def _run(self, conn: psycopg.Connection[Any], run: runs.Run) -> None:
        log.info("job started", job=run.job, tick=run.tick.isoformat(), manual=run.manual)
        try:
            counts = dict(self._jobs[run.job](JobContext(run.tick, run, self._settings)))
        except Exception as exc:  # a failed run is recorded; the next tick tries again
            log.exception("job failed", job=run.job, tick=run.tick.isoformat())
            runs.finish(conn, run, counts=None, error=f"{type(exc).__name__}: {exc}"[:500])
            return
        runs.finish(conn, run, counts=counts)
        log.info("job finished", job=run.job, tick=run.tick.isoformat(), **counts)
