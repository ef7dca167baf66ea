"""Keeping providers healthy: a shared breaker, a shared rate limit, a local concurrency cap.

The breaker lives in Redis, one hash per provider, so every dispatcher sees the same state
and the API can show it in /health and /admin/metrics. Calls are counted in a fixed window
of HERALD_BREAKER_WINDOW_S; once it holds HERALD_BREAKER_MIN_CALLS calls and the share of
failures reaches HERALD_BREAKER_ERROR_RATE, the circuit opens for HERALD_BREAKER_OPEN_S.
Then it is half-open: a few probe calls go through, and the first probe's outcome closes
or re-opens it. Only failures that say something about the provider count (timeouts,
5xx, 429); a refused recipient is the recipient's problem.

Within one process, `PriorityLimiter` caps the calls in flight per provider and lets the
most urgent waiter in first, so a backlog of `low` never queues ahead of `critical`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio

from infrastructure.settings import Settings

State = Literal["closed", "open", "half_open"]
MAX_PROBES = 3

# KEYS[1] the breaker hash. ARGV: open_ms, max_probes. Returns {verdict, wait_ms}:
# verdict 1 admitted, 2 admitted as a probe, 0 refused for wait_ms.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local open_ms = tonumber(ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'open' then
  local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until_ms') or '0')
  if now < open_until then return {0, open_until - now} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probes', 0, 'changed_ms', now)
  state = 'half_open'
end
if state == 'half_open' then
  local changed = tonumber(redis.call('HGET', KEYS[1], 'changed_ms') or '0')
  if now - changed > open_ms then
    -- Probes that never reported (their dispatcher died) must not hold it half-open forever.
    redis.call('HSET', KEYS[1], 'probes', 0, 'changed_ms', now)
  end
  if tonumber(redis.call('HGET', KEYS[1], 'probes') or '0') >= tonumber(ARGV[2]) then
    return {0, 200}
  end
  redis.call('HINCRBY', KEYS[1], 'probes', 1)
  return {2, 0}
end
return {1, 0}
"""

# KEYS[1] the breaker hash. ARGV: outcome ('ok', 'failed', 'refused'), probe (0/1),
# error_rate, min_calls, window_ms, open_ms. Returns the state after the call.
_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, outcome, probe = KEYS[1], ARGV[1], ARGV[2] == '1'
local failed = outcome == 'failed'
redis.call('HINCRBY', key, 'total_' .. outcome, 1)
local state = redis.call('HGET', key, 'state') or 'closed'
local function open()
  redis.call('HSET', key, 'state', 'open', 'open_until_ms', now + tonumber(ARGV[6]),
             'changed_ms', now, 'probes', 0, 'calls', 0, 'failures', 0, 'window_start_ms', now)
  redis.call('HINCRBY', key, 'opened_total', 1)
  return 'open'
end
if state == 'half_open' then
  if not probe then return state end
  if failed then return open() end
  redis.call('HSET', key, 'state', 'closed', 'changed_ms', now, 'probes', 0,
             'calls', 0, 'failures', 0, 'window_start_ms', now)
  return 'closed'
end
if state == 'open' then return state end
local start = tonumber(redis.call('HGET', key, 'window_start_ms') or '0')
if now - start >= tonumber(ARGV[5]) then
  redis.call('HSET', key, 'window_start_ms', now, 'calls', 0, 'failures', 0)
end
local calls = redis.call('HINCRBY', key, 'calls', 1)
local failures = tonumber(redis.call('HGET', key, 'failures') or '0')
if failed then failures = redis.call('HINCRBY', key, 'failures', 1) end
if calls >= tonumber(ARGV[4]) and failures / calls >= tonumber(ARGV[3]) then return open() end
redis.call('HSET', key, 'state', 'closed')
return 'closed'
"""


@dataclass(frozen=True)
class Admission:
    admitted: bool
    probe: bool = False
    wait_s: float = 0.0


def breaker_key(namespace: str, provider: str) -> str:
    return f"{namespace}:breaker:{provider}"


class CircuitBreaker:
    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self._namespace = settings.namespace
        self._admit = client.register_script(_ADMIT)
        self._record = client.register_script(_RECORD)
        self._args = (
            settings.breaker_error_rate,
            settings.breaker_min_calls,
            settings.breaker_window_s * 1000,
            settings.breaker_open_s * 1000,
        )

    async def admit(self, provider: str) -> Admission:
        verdict, wait_ms = await self._admit(
            keys=[breaker_key(self._namespace, provider)], args=[self._args[3], MAX_PROBES]
        )
        if int(verdict) == 0:
            return Admission(False, wait_s=int(wait_ms) / 1000)
        return Admission(True, probe=int(verdict) == 2)  # noqa: PLR2004 - the script's "probe"

    async def record(
        self, provider: str, outcome: Literal["ok", "failed", "refused"], *, probe: bool
    ) -> State:
        state = await self._record(
            keys=[breaker_key(self._namespace, provider)],
            args=[outcome, int(probe), *self._args],
        )
        text = state.decode() if isinstance(state, bytes) else str(state)
        return "open" if text == "open" else "half_open" if text == "half_open" else "closed"


async def breaker_states(
    client: redis.asyncio.Redis, namespace: str, providers: list[str]
) -> dict[str, dict[str, Any]]:
    """Each provider's breaker as the API shows it: state, counts, and when it may close."""
    async with client.pipeline(transaction=False) as pipe:
        for provider in providers:
            pipe.hgetall(breaker_key(namespace, provider))
        raw = await pipe.execute()
    out: dict[str, dict[str, Any]] = {}
    for provider, fields in zip(providers, raw, strict=True):
        values = {k.decode(): v.decode() for k, v in fields.items()}
        out[provider] = {
            "state": values.get("state", "closed"),
            "window_calls": int(values.get("calls", 0)),
            "window_failures": int(values.get("failures", 0)),
            "opened_total": int(values.get("opened_total", 0)),
            "calls_ok": int(values.get("total_ok", 0)),
            "calls_failed": int(values.get("total_failed", 0)),
            "calls_refused": int(values.get("total_refused", 0)),
        }
        if values.get("state") == "open":
            out[provider]["open_until_ms"] = int(values.get("open_until_ms", 0))
    return out


class PriorityLimiter:
    """An asyncio semaphore whose waiters enter by rank (0 first), then in arrival order."""

    def __init__(self, capacity: int) -> None:
        self._free = capacity
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, rank: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rank, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1
