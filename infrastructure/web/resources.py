"""An api worker's database pool and Redis, sampled every few seconds into gauges:
herald_db_pool_{size,in_use,waiting} (summed over the live workers), herald_redis_up (the
lowest of the workers) and herald_redis_command_duration_seconds (a PING's round trip)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from infrastructure.metrics import (
    DB_POOL_IN_USE,
    DB_POOL_SIZE,
    DB_POOL_WAITING,
    REDIS_DURATION,
    REDIS_UP,
)

SAMPLE_EVERY_S = 5.0


class ResourceGauges:
    def __init__(self, pool: AsyncConnectionPool, redis: aioredis.Redis, timeout_s: float) -> None:
        self._pool = pool
        self._redis = redis
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None

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
        name = self._pool.name
        stats = self._pool.get_stats()
        DB_POOL_SIZE.labels(name).set(self._pool.max_size)
        DB_POOL_IN_USE.labels(name).set(stats.get("pool_size", 0) - stats.get("pool_available", 0))
        DB_POOL_WAITING.labels(name).set(stats.get("requests_waiting", 0))
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._redis.ping(), self._timeout_s)
        except (RedisError, OSError, TimeoutError):
            REDIS_UP.set(0)
        else:
            REDIS_UP.set(1)
            REDIS_DURATION.labels("ping").observe(time.perf_counter() - started)
