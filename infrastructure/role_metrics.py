"""Metrics a role reads at scrape time rather than counts as it goes: how far each log
follower is behind, the dispatch queue, the export store's disk.

Each is a prometheus-client collector over its own short-lived connection, registered by the
role that has something to say (`infrastructure/entrypoints/roles.py`). A scrape while the
database is down answers without these families, and `up` stays 1: the role is alive, and
its readiness says what it lacks.
"""

from __future__ import annotations

import shutil
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from apscheduler.triggers.cron import CronTrigger
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from infrastructure.eventstore.tracking import follower_lag
from infrastructure.log import get_logger
from infrastructure.metrics import JOB_INTERVAL, set_job_gauges
from infrastructure.scheduling import runs

log = get_logger(__name__)

LANES = {0: "critical", 1: "high", 2: "normal", 3: "low"}  # dispatch_queue.priority_rank
_QUEUE = """
SELECT priority_rank, count(*),
       coalesce(max(extract(epoch FROM now() - due_at))
                FILTER (WHERE due_at <= now() AND (leased_until IS NULL OR leased_until < now())),
                0)
FROM dispatch_queue GROUP BY priority_rank
"""


class _FromDatabase(Collector):
    def __init__(self, database_url: str) -> None:
        self._url = database_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with psycopg.connect(self._url, autocommit=True, connect_timeout=3) as conn:
                yield from self.read(conn)
        except psycopg.Error as exc:
            log.warning("metrics could not read the database", error=str(exc))

    @abstractmethod
    def read(self, conn: psycopg.Connection[Any]) -> Iterator[GaugeMetricFamily]:
        """The families, read over `conn`."""


class RelayLag(_FromDatabase):
    """herald_relay_position, herald_relay_lag_events, herald_relay_lag_seconds."""

    def __init__(self, database_url: str, tracking_name: str, names: list[str]) -> None:
        super().__init__(database_url)
        self._name = tracking_name
        self._names = names

    def read(self, conn: psycopg.Connection[Any]) -> Iterator[GaugeMetricFamily]:
        position, waiting, age = follower_lag(conn, self._name, self._names)
        yield GaugeMetricFamily(
            "herald_relay_position", "The last log position on Kafka.", position
        )
        yield GaugeMetricFamily(
            "herald_relay_lag_events", "Notification events stored and not yet on Kafka.", waiting
        )
        yield GaugeMetricFamily(
            "herald_relay_lag_seconds",
            "Age of the oldest notification event not yet on Kafka (0: none waits).",
            age,
        )


class ProjectionLag(_FromDatabase):
    """herald_projection_{position,lag_events,lag_seconds}{projection}."""

    def __init__(
        self, database_url: str, projections: Mapping[str, tuple[str, list[str] | None]]
    ) -> None:
        super().__init__(database_url)
        self._projections = projections  # label: (tracking name, event names or None: all)

    def read(self, conn: psycopg.Connection[Any]) -> Iterator[GaugeMetricFamily]:
        position = GaugeMetricFamily(
            "herald_projection_position",
            "The log position each projection reflects.",
            labels=["projection"],
        )
        waiting = GaugeMetricFamily(
            "herald_projection_lag_events",
            "Events each projection has still to apply.",
            labels=["projection"],
        )
        age = GaugeMetricFamily(
            "herald_projection_lag_seconds",
            "Age of the oldest event each projection has still to apply (0: none waits).",
            labels=["projection"],
        )
        for label, (name, names) in self._projections.items():
            at, behind, seconds = follower_lag(conn, name, names)
            position.add_metric([label], at)
            waiting.add_metric([label], behind)
            age.add_metric([label], seconds)
        yield from (position, waiting, age)


class DispatchQueue(_FromDatabase):
    """herald_dispatch_queue_depth{lane}, herald_dispatch_oldest_due_age_seconds{lane}."""

    def read(self, conn: psycopg.Connection[Any]) -> Iterator[GaugeMetricFamily]:
        rows = {int(rank): (int(n), float(age)) for rank, n, age in conn.execute(_QUEUE)}
        depth = GaugeMetricFamily(
            "herald_dispatch_queue_depth",
            "Notifications in the dispatch queue (due or not), by priority lane.",
            labels=["lane"],
        )
        oldest = GaugeMetricFamily(
            "herald_dispatch_oldest_due_age_seconds",
            "How long the longest-waiting due, unleased notification has been due, by lane.",
            labels=["lane"],
        )
        for rank, lane in LANES.items():
            n, age = rows.get(rank, (0, 0.0))
            depth.add_metric([lane], n)
            oldest.add_metric([lane], max(age, 0.0))
        yield from (depth, oldest)


class ExportStore(Collector):
    """herald_export_store_{free,size}_bytes of the disk holding export files and archives."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # The directory's disk, or before the first export, the disk it will be made on.
        place = self._directory
        while not place.exists() and place != place.parent:
            place = place.parent
        try:
            usage = shutil.disk_usage(place)
        except OSError:
            return
        yield GaugeMetricFamily(
            "herald_export_store_free_bytes",
            "Free bytes on the disk holding export files and archives.",
            usage.free,
        )
        yield GaugeMetricFamily(
            "herald_export_store_size_bytes",
            "Size of the disk holding export files and archives.",
            usage.total,
        )


def refresh_job_gauges(database_url: str) -> None:
    """Set the job gauges from `job_runs` before a scheduler's scrape is answered."""
    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=3) as conn:
            successes = conn.execute(runs.LAST_SUCCESSES).fetchall()
            counts = conn.execute(runs.LAST_COUNTS).fetchall()
    except psycopg.Error as exc:
        log.warning("metrics could not read the job runs", error=str(exc))
        return
    set_job_gauges(successes, counts)


def set_job_intervals(schedules: Mapping[str, CronTrigger]) -> None:
    """herald_job_interval_seconds{job_name}: the time between two ticks of each schedule."""
    now = datetime.now(UTC)
    for name, trigger in schedules.items():
        first = trigger.get_next_fire_time(None, now)
        second = None if first is None else trigger.get_next_fire_time(first, first)
        if first is not None and second is not None:
            JOB_INTERVAL.labels(name).set((second - first).total_seconds())
