"""An api worker's database pool, Redis and process, sampled every few seconds into gauges:
herald_db_pool_{size,in_use,waiting} (summed over the live workers), herald_redis_up (the
lowest of the workers), herald_redis_command_duration_seconds (a PING's round trip), and the
worker's resident memory and CPU time (herald_api_resident_memory_bytes, _cpu_seconds)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import redis.asyncio as aioredis
from opentelemetry.instrumentation.utils import suppress_instrumentation
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from infrastructure.metrics import (
    API_CPU,
    API_MEMORY,
    DB_POOL_IN_USE,
    DB_POOL_SIZE,
    DB_POOL_WAITING,
    REDIS_DURATION,
    REDIS_UP,
)

SAMPLE_EVERY_S = 5.0


_PAGE = os.sysconf("SC_PAGE_SIZE")


class ResourceGauges:
    def __init__(self, pool: AsyncConnectionPool, redis: aioredis.Redis, timeout_s: float) -> None:
        self._pool = pool
        self._redis = redis
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self._cpu_s = 0.0  # CPU time counted so far

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="resource-gauges")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def sample(self) -> None:
        self._sample_process()
        name = self._pool.name
        stats = self._pool.get_stats()
        DB_POOL_SIZE.labels(name).set(self._pool.max_size)
        DB_POOL_IN_USE.labels(name).set(stats.get("pool_size", 0) - stats.get("pool_available", 0))
        DB_POOL_WAITING.labels(name).set(stats.get("requests_waiting", 0))
        started = time.perf_counter()
        try:
            with suppress_instrumentation():  # a probe every 5 s is not worth a trace each
                await asyncio.wait_for(self._redis.ping(), self._timeout_s)
        except (RedisError, OSError, TimeoutError):
            REDIS_UP.set(0)
        else:
            REDIS_UP.set(1)
            REDIS_DURATION.labels("ping").observe(time.perf_counter() - started)

    def _sample_process(self) -> None:
        with contextlib.suppress(OSError):
            resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
            API_MEMORY.set(resident_pages * _PAGE)
        cpu_s = time.process_time()
        API_CPU.inc(max(cpu_s - self._cpu_s, 0.0))
        self._cpu_s = cpu_s
