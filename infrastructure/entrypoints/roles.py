"""Herald's roles: the long-running processes `herald serve ROLE` starts against configured servers.

Each role is one kind of process; run as many of each as the load needs.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator

from infrastructure.log import get_logger
from infrastructure.resuming import resuming
from infrastructure.settings import (
    Settings,
    require_master_key,
    require_servers,
    require_signing_key,
)
from infrastructure.tracing import configure_tracing, shutdown_tracing

log = get_logger(__name__)


API_APP = "infrastructure.entrypoints.app:from_environment"


def require_role_settings(role: str, settings: Settings) -> None:
    """What `herald serve ROLE` needs before it starts, each missing one named by
    MissingServerError or SettingsError: the three servers and the master key for every
    role (each seals or opens personal data), and the signing key for the api."""
    require_servers(settings)
    require_master_key(settings)
    if role == "api":
        require_signing_key(settings)


def serve_api(settings: Settings) -> None:
    """The HTTP API: commands and queries, served by granian with HERALD_HTTP_WORKERS processes."""
    serve_http(settings, API_APP)


def serve_http(settings: Settings, target: str) -> None:
    """Serve the ASGI app that factory `target` builds in each of HERALD_HTTP_WORKERS processes."""
    from granian import Granian  # noqa: PLC0415 - only HTTP roles need the server
    from granian.constants import Interfaces  # noqa: PLC0415

    require_servers(settings)
    require_signing_key(settings)
    # Before any worker imports prometheus-client (infrastructure.metrics): each start gets
    # an empty directory, so the workers' metrics add up from zero.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="herald-metrics-")
    log.info(
        "http listening",
        app=target,
        url=f"http://{settings.http_host}:{settings.http_port}",
        workers=settings.http_workers,
    )
    Granian(
        target=target,
        factory=True,
        address=settings.http_host,
        port=settings.http_port,
        interface=Interfaces.ASGI,
        workers=settings.http_workers,
        log_enabled=False,  # the workers log through structlog, with request ids
        respawn_failed_workers=True,
        workers_kill_timeout=10,
    ).serve()


def serve_relay(settings: Settings) -> None:
    """The outbox relay: event store to Kafka, until SIGTERM or SIGINT."""
    from infrastructure.eventstore import catalog  # noqa: PLC0415
    from infrastructure.relay import Relay  # noqa: PLC0415

    require_servers(settings)
    stop = _stop_on_signals()
    with _health(settings, "relay"):
        relay = Relay(settings, catalog.codec(), catalog.NOTIFICATION_EVENT_NAMES)
        resuming("relay", relay.run)(stop)


@contextlib.contextmanager
def _health(settings: Settings, role: str) -> Iterator[None]:
    """While the role runs: its /metrics and /health/* on HERALD_METRICS_PORT, its spans
    exported to HERALD_OTLP_ENDPOINT (sent on the way out), and what starting it made kept
    out of the garbage collector's sight."""
    from infrastructure.entrypoints.role_health import serving_health  # noqa: PLC0415

    configure_tracing(settings, role)
    try:
        with serving_health(settings, role):
            settle_heap()
            yield
    finally:
        shutdown_tracing()


def settle_heap() -> None:
    """Move what starting made (modules, clients, settings) out of the collector's reach, so
    that a full collection scans only what the role's loop makes. The projector spent a
    quarter of its CPU collecting, most of it rescanning those objects."""
    gc.collect()
    gc.freeze()


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def serve_projector(settings: Settings) -> None:
    """The projections, until stopped: notifications from Kafka (and the event store behind
    it) to their read models, and the audit log (a thread) from the event store itself."""
    from infrastructure.eventstore import catalog  # noqa: PLC0415
    from projections.audit.projector import AuditProjection  # noqa: PLC0415
    from projections.notifications.projector import NotificationsProjector  # noqa: PLC0415

    database_url, _, _ = require_servers(settings)
    stop = _stop_on_signals()
    audit = AuditProjection(database_url, catalog.codec_for(settings))
    auditing = threading.Thread(target=audit.run, args=(stop,), name="audit-projection")
    auditing.start()
    projector = NotificationsProjector(
        settings, catalog.codec_for(settings), list(catalog.NOTIFICATION_EVENT_NAMES)
    )
    try:
        with _health(settings, "projector"):
            resuming("notifications projection", projector.run)(stop)
    finally:
        stop.set()
        auditing.join()


def serve_dispatcher(settings: Settings) -> None:
    """Delivery, until stopped: the dispatch-queue projection (a consumer thread) keeps the
    queue, and the dispatcher's workers take due rows to provider calls."""
    from commands.dispatch.dispatcher import Dispatcher  # noqa: PLC0415
    from infrastructure.eventstore import catalog  # noqa: PLC0415
    from infrastructure.providers.registry import build_providers  # noqa: PLC0415
    from projections.dispatch_queue.consumer import DispatchQueueProjection  # noqa: PLC0415

    require_servers(settings)
    stop = _stop_on_signals()
    codec = catalog.codec_for(settings)
    dispatcher = Dispatcher(settings, codec, build_providers(settings))
    queue = DispatchQueueProjection(settings, codec, on_due=dispatcher.wake)
    consumer = threading.Thread(
        target=resuming("dispatch queue", queue.run), args=(stop,), name="dispatch-queue"
    )
    consumer.start()
    try:
        with _health(settings, "dispatcher"):
            resuming("dispatcher", dispatcher.run)(stop)
    finally:
        stop.set()
        consumer.join()


def serve_scheduler(settings: Settings) -> None:
    """The scheduled jobs, until stopped; run as many schedulers as you like: each tick of a
    job runs once among them all."""
    from infrastructure.entrypoints.jobs import polled_work, scheduled_jobs  # noqa: PLC0415
    from infrastructure.scheduling.runner import Scheduler  # noqa: PLC0415

    require_servers(settings)
    stop = _stop_on_signals()
    with polled_work(settings) as pollers, _health(settings, "scheduler"):
        scheduler = Scheduler(settings, scheduled_jobs(settings), pollers)
        resuming("scheduler", scheduler.run)(stop)


ROLES: dict[str, Callable[[Settings], None]] = {
    "api": serve_api,
    "relay": serve_relay,
    "projector": serve_projector,
    "dispatcher": serve_dispatcher,
    "scheduler": serve_scheduler,
}
