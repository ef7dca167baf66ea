"""`python -m perf read`: GET /notifications/{id} served from Redis, against a no-op GET
behind the same guard in the same app and run; then the cache hit rate of the same
Zipf-distributed key load starting from an empty cache (the status hashes deleted, as
after Redis lost them), every miss read from PostgreSQL and refilled: over a first window
and over the one after it.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from typing import Any

import msgspec
import psycopg
import redis

from domain.identity.roles import Role
from infrastructure.eventstore import catalog
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION, stored_position
from infrastructure.redis_keys import RedisKeys
from perf.harness import (
    Load,
    http_process,
    machine,
    median_load,
    servers,
    token_for,
    wrk_paths,
)
from perf.project import STAGES, _fill
from projections.notifications.projector import NotificationsProjector

TARGETS = {"vs_noop": 0.8, "hit_rate": 0.95}
ROUNDS = 3
ZIPF_S = 1.1
SAMPLES = 200_000


def _zipf(ids: list[str], rng: random.Random) -> list[str]:
    """SAMPLES ids drawn with probability proportional to 1 / rank ** ZIPF_S."""
    weights = [1 / (rank**ZIPF_S) for rank in range(1, len(ids) + 1)]
    cumulative = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    order = ids[:]
    rng.shuffle(order)
    return [order[bisect.bisect(cumulative, rng.random() * total)] for _ in range(SAMPLES)]


def _project_all(settings: Any, database_url: str) -> None:
    projector = NotificationsProjector(
        settings, catalog.codec(), list(catalog.NOTIFICATION_EVENT_NAMES)
    )
    stop = threading.Event()
    thread = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    thread.start()
    with psycopg.connect(database_url, autocommit=True) as conn:
        head_row = conn.execute("SELECT max(notification_id) FROM stored_events").fetchone()
        head = int(head_row[0]) if head_row else 0
        while stored_position(conn, NOTIFICATIONS_PROJECTION) < head:
            time.sleep(0.1)
    stop.set()
    thread.join(30)


def _counters(url: str, token: str) -> dict[str, float]:
    import httpx  # noqa: PLC0415 - a dev dependency; benchmarks run from the dev environment

    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}).text
    counts = {"hit": 0.0, "miss": 0.0}
    for line in text.splitlines():
        for result in counts:
            if line.startswith(f'herald_read_cache_total{{result="{result}"}}'):
                counts[result] = float(line.rsplit(" ", 1)[1])
    return counts


def run(quick: bool) -> dict[str, Any]:
    seconds = 3 if quick else 10
    count = 10_000 if quick else 50_000
    with servers() as settings:
        assert settings.database_url is not None  # noqa: S101 - servers() set them
        assert settings.redis_url is not None  # noqa: S101
        database_url = settings.database_url.reveal()
        _fill(database_url, count, tenant="bench")
        _project_all(settings, database_url)
        with psycopg.connect(database_url) as conn:
            ids = [str(r[0]) for r in conn.execute("SELECT notification_id FROM notification_view")]
        paths = _zipf(ids, random.Random(7))
        reader = {"Authorization": f"Bearer {token_for(settings, Role.AUDITOR)}"}
        operator = token_for(settings, Role.OPERATOR)
        by_id = [f"/notifications/{i}" for i in paths]
        noop_paths = [f"/bench/noop/{i}" for i in paths]
        # Rate limiting is off: perf auth measures its cost; this measures the read path.
        bench = msgspec.structs.replace(settings, rate_limit_enabled=False)
        with http_process(bench, "perf.read_app:from_environment") as url:
            wrk_paths(url, by_id, seconds=1, headers=reader)  # warm up
            noop: list[Load] = []
            reads: list[Load] = []
            for _ in range(ROUNDS):
                noop.append(wrk_paths(url, noop_paths, seconds=seconds, headers=reader))
                reads.append(wrk_paths(url, by_id, seconds=seconds, headers=reader))
            client = redis.Redis.from_url(settings.redis_url.reveal())
            keys = RedisKeys(settings.namespace)
            for start in range(0, len(ids), 1000):
                client.delete(*(keys.status(i) for i in ids[start : start + 1000]))
            client.close()
            first = _counters(url, operator)
            cold = wrk_paths(url, by_id, seconds=seconds, headers=reader)
            middle = _counters(url, operator)
            warm = wrk_paths(url, by_id, seconds=seconds, headers=reader)
            end = _counters(url, operator)
    for result in (*noop, *reads, cold, warm):
        if result.non_2xx:
            raise RuntimeError(f"{result.non_2xx} non-2xx answers during the run")
    best_noop, best_read = median_load(noop), median_load(reads)

    def hit_rate(before: dict[str, float], after: dict[str, float]) -> float | None:
        hits, misses = after["hit"] - before["hit"], after["miss"] - before["miss"]
        return round(hits / (hits + misses), 4) if hits + misses else None

    return {
        "scenario": "read",
        "value": best_read.requests_per_s,
        "unit": "req/s",
        "baseline": best_noop.requests_per_s,
        "ratio": round(best_read.requests_per_s / best_noop.requests_per_s, 3),
        "p99_ms": best_read.p99_ms,
        "noop_p99_ms": best_noop.p99_ms,
        "notifications": count,
        "events": count * STAGES,
        "zipf_s": ZIPF_S,
        # The same Zipf load from an emptied cache: the first window, then the next one.
        "hit_rate_first_window": hit_rate(first, middle),
        "hit_rate_second_window": hit_rate(middle, end),
        "req_per_s_first_window": cold.requests_per_s,
        "req_per_s_second_window": warm.requests_per_s,
        "targets": TARGETS,
        "machine": machine(),
    }
