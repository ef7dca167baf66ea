"""Prometheus metrics of the API processes, and their exposition.

The api role runs several worker processes; `serve_http` points PROMETHEUS_MULTIPROC_DIR at a
fresh directory before they start, so prometheus-client's multiprocess mode adds their
counters up. A process started without it (tests, one-off tools) uses the default registry.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

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


# Set from the job_runs table when /metrics is scraped, in whichever worker answers.
JOB_LAST_SUCCESS = Gauge(
    "herald_job_last_success_timestamp_seconds",
    "When each scheduled job last finished successfully, in Unix time.",
    ["job"],
    multiprocess_mode="max",
)
JOB_LAST_COUNT = Gauge(
    "herald_job_last_run_count",
    "What each job's last finished run did, by the job's own measures (verify-sample's "
    "`differing` is drift).",
    ["job", "measure"],
    multiprocess_mode="mostrecent",
)


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
