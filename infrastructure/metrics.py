"""Herald's Prometheus metrics, and their exposition.

Every role defines the same metrics and sets those it has something to say about. Names
follow Prometheus's conventions (`_total` counters, base units); no label takes unbounded
values: no ids, no addresses. docs/observability.md lists them by role.

The api role runs several worker processes; `serve_http` points PROMETHEUS_MULTIPROC_DIR at a
fresh directory before they start, so prometheus-client's multiprocess mode adds their
counters up. The other roles are one process each and serve the default registry on
HERALD_METRICS_PORT (`role_listener.py`), with the values read at scrape time
(`role_metrics.py`).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Golden signals of the api, by route template (never the path itself).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_DURATION = Histogram(
    "herald_http_request_duration_seconds",
    "API requests by route template, method and status, and how long they took.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "herald_http_requests_in_flight",
    "API requests being answered now.",
    multiprocess_mode="livesum",
)

# The event store's group commit.
APPEND_DURATION = Histogram(
    "herald_event_append_duration_seconds",
    "From a unit of events handed to the group commit to its commit.",
    buckets=LATENCY_BUCKETS,
)
COMMIT_UNITS = Histogram(
    "herald_group_commit_units",
    "Units (a command's or a batch's events) committed together in one transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
APPEND_CONFLICTS = Counter(
    "herald_event_append_conflicts_total",
    "Units refused because their stream had moved on (decided again by their caller).",
)

# The relay.
RELAY_PUBLISHED = Counter(
    "herald_relay_published_events_total", "Events the relay published to Kafka."
)

# Projections: events applied; lag is read at scrape time.
PROJECTION_EVENTS = Counter(
    "herald_projection_events_total", "Events each projection applied.", ["projection"]
)
REDIS_MODELS_REBUILT = Counter(
    "herald_projection_redis_rebuilds_total",
    "Times a projector rebuilt its Redis models from PostgreSQL after Redis lost them.",
    ["projection"],
)

# Delivery.
DISPATCH_ATTEMPTS = Counter(
    "herald_dispatch_attempts_total",
    "Provider calls by provider, channel and outcome: ok, failed (may be retried) or "
    "refused (permanent).",
    ["provider", "channel", "outcome"],
)
PROVIDER_DURATION = Histogram(
    "herald_provider_call_duration_seconds",
    "How long each provider call took, whatever its outcome.",
    ["provider", "channel"],
    buckets=LATENCY_BUCKETS,
)
CIRCUIT_OPEN = Gauge(
    "herald_provider_circuit_open",
    "1 while a provider's circuit breaker holds its calls back, else 0.",
    ["provider"],
    multiprocess_mode="max",
)
DISPATCH_RETRIES = Counter(
    "herald_dispatch_retries_total", "Retries scheduled after a failed attempt.", ["channel"]
)
DEAD_LETTERS = Counter(
    "herald_dispatch_dead_letters_total", "Notifications given up on.", ["channel"]
)

# What the api's workers hold: their database pool, and Redis (`web/resources.py`).
DB_POOL_SIZE = Gauge(
    "herald_db_pool_size", "Connections a pool may open.", ["pool"], multiprocess_mode="livesum"
)
DB_POOL_IN_USE = Gauge(
    "herald_db_pool_in_use", "Connections lent out now.", ["pool"], multiprocess_mode="livesum"
)
DB_POOL_WAITING = Gauge(
    "herald_db_pool_waiting",
    "Requests waiting for a connection.",
    ["pool"],
    multiprocess_mode="livesum",
)
# The api's workers, added up (multiprocess mode has no process collector of its own).
API_MEMORY = Gauge(
    "herald_api_resident_memory_bytes",
    "Resident memory of the api's live worker processes, added up.",
    multiprocess_mode="livesum",
)
API_CPU = Counter(
    "herald_api_cpu_seconds", "CPU time the api's worker processes have used, added up."
)
REDIS_UP = Gauge(
    "herald_redis_up", "1 when Redis answered the last probe, else 0.", multiprocess_mode="livemin"
)
REDIS_DURATION = Histogram(
    "herald_redis_command_duration_seconds",
    "Round trips to Redis, by command (the health probe's PING).",
    ["command"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)

# Business: what happened to notifications, by channel and priority.
NOTIFICATIONS = Counter(
    "herald_notifications_total",
    "Notifications by what happened to them (requested, sent, delivered, failed, bounced, "
    "dead_lettered, cancelled), channel and priority.",
    ["event", "channel", "priority"],
)
_BUSINESS = {
    "NotificationRequested": "requested",
    "NotificationSent": "sent",
    "NotificationDelivered": "delivered",
    "DeliveryFailed": "failed",
    "NotificationBounced": "bounced",
    "NotificationDeadLettered": "dead_lettered",
    "NotificationCancelled": "cancelled",
}


def count_requested(kinds: Iterable[tuple[str, str]]) -> None:
    """Count requested notifications by (channel, priority): one increment per kind, so a
    batch of a thousand costs a few."""
    for (channel, priority), n in collections.Counter(kinds).items():
        NOTIFICATIONS.labels("requested", channel, priority).inc(n)


def count_notification_events(channel: str, priority: str, events: Iterable[object]) -> None:
    """Count the business events among `events`, appended to one notification."""
    for event in events:
        name = type(event).__name__
        kind = _BUSINESS.get(name)
        if kind is not None:
            NOTIFICATIONS.labels(kind, channel, priority).inc()
        if name == "RetryScheduled":
            DISPATCH_RETRIES.labels(channel).inc()
        elif name == "NotificationDeadLettered":
            DEAD_LETTERS.labels(channel).inc()


READ_CACHE = Counter(
    "herald_read_cache_total",
    "Notification lookups by id, by where they were answered from: hit (Redis) or miss (SQL).",
    ["result"],
)
LIST_CACHE = Counter(
    "herald_list_cache_total",
    "Notification list pages by where they were answered from: hit (Redis) or miss (SQL).",
    ["result"],
)
READ_WAITS = Counter(
    "herald_read_wait_total",
    "Reads that asked for min_position, by outcome: ready, waited, or unavailable (503).",
    ["outcome"],
)


# Set from the job_runs table when /metrics is scraped: in whichever api worker answers, and
# in a scheduler.
# Labelled job_name, not job: Prometheus gives every scraped series a `job` of its own.
JOB_LAST_SUCCESS = Gauge(
    "herald_job_last_success_timestamp_seconds",
    "When each scheduled job last finished successfully, in Unix time.",
    ["job_name"],
    multiprocess_mode="max",
)
JOB_LAST_COUNT = Gauge(
    "herald_job_last_run_count",
    "What each job's last finished run did, by the job's own measures (verify-sample's "
    "`differing` is drift).",
    ["job_name", "measure"],
    multiprocess_mode="mostrecent",
)
JOB_INTERVAL = Gauge(
    "herald_job_interval_seconds",
    "Seconds between two runs of each scheduled job, by its schedule (set by schedulers).",
    ["job_name"],
    multiprocess_mode="max",
)


def set_job_gauges(
    successes: Iterable[tuple[str, datetime]], counts: Iterable[tuple[str, dict[str, Any] | None]]
) -> None:
    """The job gauges from `job_runs`: each job's last success, and its last run's counts."""
    for job, finished in successes:
        JOB_LAST_SUCCESS.labels(job).set(finished.timestamp())
    for job, measures in counts:
        for measure, value in (measures or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                JOB_LAST_COUNT.labels(job, measure).set(value)


def _registry() -> CollectorRegistry:
    """All workers' metrics in multiprocess mode, else this process's."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, and its content type."""
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def cache_counts(metric: str = "herald_read_cache") -> dict[str, float]:
    """Hits and misses of `metric` so far."""
    counts = {"hit": 0.0, "miss": 0.0}
    for family in _registry().collect():
        if family.name == metric:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["result"]] = sample.value
    return counts
