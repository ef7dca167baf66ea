"""Coalesces concurrent Redis reads of one process into pipelined round trips.

redis-py's asyncio client spends most of a small command's cost outside Redis: taking a
connection from the pool, packing, awaiting, giving it back. A busy API worker has dozens
of requests in flight; `HashReader.get` queues each read, and one task per event-loop turn
sends everything queued in one pipeline. An idle worker pays one loop turn of latency.
"""

from __future__ import annotations

import asyncio
from typing import cast

import redis.asyncio as aioredis

Found = tuple[dict[bytes, bytes], bytes | None]


class StatusReader:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._queued: list[tuple[str, str, asyncio.Future[Found]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, hash_key: str, key: str) -> Found:
        """HGETALL `hash_key` and GET `key`, sent with whatever else was asked for in this
        loop turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Found] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((hash_key, key, future))
        return await future

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[str, str, asyncio.Future[Found]]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for hash_key, key, _ in batch:
            pipe.hgetall(hash_key)
            pipe.get(key)
        try:
            results = await pipe.execute()
        except Exception as exc:  # every waiting reader gets the failure
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for index, (_, _, future) in enumerate(batch):
            if not future.done():
                stored = cast("dict[bytes, bytes]", results[2 * index])
                future.set_result((stored, cast("bytes | None", results[2 * index + 1])))
