"""`python -m perf export`: a CSV export streamed over HTTP, against PostgreSQL's own
`COPY (SELECT ...) TO STDOUT` of the same rows in the same run; and the API worker's memory
while it streams a million rows.

The read model is filled straight with SQL (generate_series) and the projection's position
set over it: this measures the export, not the projection (perf project does that).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import psutil
import psycopg

from domain.identity.roles import Role
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION, save_position
from perf.harness import http_process, machine, servers, token_for

TARGET_RATIO = 0.5
TARGET_RSS_GROWTH_MB = 100
SAMPLE_S = 0.05
COLUMNS = (
    "notification_id::text AS id, channel, recipient, priority, status, requested_at,"
    " updated_at, attempts::bigint AS attempts, last_error, provider, provider_message_id,"
    " send_at, scheduled_at, dispatched_at, sent_at, delivered_at, opened_at, failed_at,"
    " cancelled_at, dead_lettered_at, version, position"
)
_FILL = """
INSERT INTO notification_view (
    notification_id, tenant_id, channel, recipient, priority, status, attempts,
    provider_message_id, requested_at, updated_at, version, position, created_position,
    provider, dispatched_at, sent_at, delivered_at)
SELECT gen_random_uuid(), 'bench', 'email', 'user' || i || '@example.com', 'normal',
       'delivered', 1, 'm-' || i, now(), now(), 4, i, i, 'sendgrid', now(), now(), now()
FROM generate_series(1, %s) AS i
"""


def _fill(database_url: str, rows: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(_FILL, (rows,))
        conn.execute("ANALYZE notification_view")
        save_position(conn, NOTIFICATIONS_PROJECTION, rows)


def _copy_rate(database_url: str) -> tuple[float, int]:
    """Rows per second of the same rows through COPY TO STDOUT, read by psycopg."""
    statement = (
        f"COPY (SELECT {COLUMNS} FROM notification_view WHERE tenant_id = 'bench'"  # noqa: S608
        " ORDER BY created_position) TO STDOUT WITH (FORMAT csv, HEADER true)"
    )
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        started = time.perf_counter()
        size = 0
        with cursor.copy(statement) as copy:
            for data in copy:
                size += len(data)
        elapsed = time.perf_counter() - started
        return cursor.rowcount / elapsed, size


def _worker(url: str) -> psutil.Process:
    """The granian worker that serves the requests: of the processes listening on the port
    and their children, the one holding the app (the most memory)."""
    port = int(url.rsplit(":", 1)[1])
    listening = {
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.status == "LISTEN" and c.pid is not None and c.laddr and c.laddr.port == port
    }
    if not listening:
        raise RuntimeError(f"nothing listens on port {port}")
    family = [psutil.Process(pid) for pid in listening]
    family += [child for p in list(family) for child in p.children(recursive=True)]
    return max(family, key=lambda p: p.memory_info().rss)


def _http_export(url: str, token: str, worker: psutil.Process) -> dict[str, Any]:
    peak = [worker.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], worker.memory_info().rss)
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    headers = {"Authorization": f"Bearer {token}"}
    size = lines = 0
    sampler.start()
    started = time.perf_counter()
    with httpx.stream(
        "GET",
        f"{url}/data-pipeline/export/notifications",
        params={"format": "csv"},
        headers=headers,
        timeout=600,
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    rows = lines - 1  # the header
    return {"rows": rows, "bytes": size, "seconds": elapsed, "peak_rss": peak[0]}


def run(quick: bool) -> dict[str, Any]:
    rows = 200_000 if quick else 1_000_000
    with servers() as settings:
        if settings.database_url is None:
            raise RuntimeError("no database")
        database_url = settings.database_url.reveal()
        _fill(database_url, rows)
        copy_rate, copy_bytes = _copy_rate(database_url)
        token = token_for(settings, Role.ADMIN)
        with http_process(settings, "infrastructure.entrypoints.app:from_environment", 1) as url:
            worker = _worker(url)
            idle = worker.memory_info().rss
            exported = _http_export(url, token, worker)
        copy_rate_again, _ = _copy_rate(database_url)
    if exported["rows"] != rows:
        raise RuntimeError(f"exported {exported['rows']} rows, not {rows}")
    baseline = (copy_rate + copy_rate_again) / 2
    rate = exported["rows"] / exported["seconds"]
    growth = (exported["peak_rss"] - idle) / 2**20
    return {
        "scenario": "export",
        "value": round(rate, 1),
        "unit": "rows/s (CSV over HTTP)",
        "baseline": round(baseline, 1),
        "ratio": round(rate / baseline, 3),
        "target_ratio": TARGET_RATIO,
        "rows": rows,
        "http_bytes": exported["bytes"],
        "copy_bytes": copy_bytes,
        "worker_rss_idle_mb": round(idle / 2**20, 1),
        "worker_rss_peak_mb": round(exported["peak_rss"] / 2**20, 1),
        "worker_rss_growth_mb": round(growth, 1),
        "target_rss_growth_mb": TARGET_RSS_GROWTH_MB,
        "machine": machine(),
    }
