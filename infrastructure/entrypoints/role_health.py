"""Which metrics and readiness checks each role other than the api serves on
HERALD_METRICS_PORT (see `infrastructure/role_listener.py`).

Readiness is what an orchestrator routes by and restarts on: the database answers, and a log
follower keeps up (its oldest waiting event is younger than READY_LAG_S).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from infrastructure.eventstore import catalog
from infrastructure.eventstore.tracking import (
    AUDIT_PROJECTION,
    NOTIFICATIONS_PROJECTION,
    RELAY,
    follower_lag,
)
from infrastructure.role_listener import RoleListener
from infrastructure.role_metrics import (
    DispatchQueue,
    ExportStore,
    ProjectionLag,
    RelayLag,
    refresh_job_gauges,
    set_job_intervals,
)
from infrastructure.settings import Settings, SettingsError, require_servers
from infrastructure.settings.pipeline import cron_trigger
from infrastructure.web.health import FollowerHealth

READY_LAG_S = 300.0
_NAMES = list(catalog.NOTIFICATION_EVENT_NAMES)
# Each follower of the log: its tracking name, and the events it handles (None: all).
FOLLOWERS: dict[str, tuple[str, list[str] | None]] = {
    "relay": (RELAY, _NAMES),
    "notifications": (NOTIFICATIONS_PROJECTION, _NAMES),
    "audit": (AUDIT_PROJECTION, None),
}


async def follower_health(database_url: str) -> dict[str, FollowerHealth]:
    """The relay's and each projection's position and lag, for the api's /health."""

    def read() -> dict[str, FollowerHealth]:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=3) as conn:
            found = {}
            for label, (name, names) in FOLLOWERS.items():
                position, waiting, age = follower_lag(conn, name, names)
                found[label] = FollowerHealth(position, waiting, round(age, 3))
            return found

    return await asyncio.to_thread(read)


@contextlib.contextmanager
def serving_health(settings: Settings, role: str) -> Iterator[None]:
    """Serve the role's metrics and health while the block runs (nothing when
    HERALD_METRICS_PORT is 0)."""
    if settings.metrics_port == 0:
        yield
        return
    database_url, _, _ = require_servers(settings)
    collectors, follows, before_scrape = _for_role(settings, role, database_url)
    for collector in collectors:
        REGISTRY.register(collector)
    try:
        listener = RoleListener(
            role,
            settings.metrics_host,
            settings.metrics_port,
            lambda: _readiness(database_url, follows),
            before_scrape=before_scrape,
        )
    except OSError as exc:
        for collector in collectors:
            REGISTRY.unregister(collector)
        raise SettingsError(
            "HERALD_METRICS_PORT",
            f"cannot be listened on at {settings.metrics_host}:{settings.metrics_port}"
            f" ({exc.strerror})",
            hint="give each process on a host a port of its own, or 0 for none",
        ) from None
    listener.start()
    try:
        yield
    finally:
        listener.stop()
        for collector in collectors:
            REGISTRY.unregister(collector)


def _for_role(
    settings: Settings, role: str, database_url: str
) -> tuple[list[Collector], dict[str, list[str] | None], Callable[[], None] | None]:
    """The role's collectors, the followers its readiness checks, and what to refresh
    before each scrape."""
    if role == "relay":
        name, names = FOLLOWERS["relay"]
        return [RelayLag(database_url, name, names or [])], {name: names}, None
    if role == "projector":
        projections = {label: FOLLOWERS[label] for label in ("notifications", "audit")}
        follows = {name: names for name, names in projections.values()}
        return [ProjectionLag(database_url, projections)], follows, None
    if role == "dispatcher":
        return [DispatchQueue(database_url)], {}, None
    if role == "scheduler":
        set_job_intervals({job: cron_trigger(cron) for job, cron in settings.schedules.items()})
        store = ExportStore(settings.export_path)
        return [store], {}, lambda: refresh_job_gauges(database_url)
    raise ValueError(f"no health listener for role {role!r}")


def _readiness(database_url: str, follows: dict[str, list[str] | None]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
            checks["database"] = "ok"
            for name, names in follows.items():
                _, waiting, age = follower_lag(conn, name, names)
                checks[name] = {"lag_events": waiting, "lag_seconds": round(age, 1)}
    except psycopg.Error as exc:
        return {"ready": False, "database": str(exc).strip()}
    behind = [name for name in follows if checks[name]["lag_seconds"] > READY_LAG_S]
    return {"ready": not behind, **checks}
