"""Multi-tier fixed-window rate limiting in Redis: one atomic Lua script, one round trip per check.

`RateLimiter.hit` counts a request against every tier of a key only when all of them allow it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import redis.asyncio

# KEYS[i] is tier i's counter; ARGV[i] its limit, ARGV[n + i] its window in ms.
# Returns {allowed, tier (1-based), remaining, ttl_ms} for the most constraining tier.
_LUA = """
local n = #KEYS
local ttls = {}
for i = 1, n do
  local limit, window = tonumber(ARGV[i]), tonumber(ARGV[n + i])
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl == -1 then
    -- A counter without expiry would deny forever once full: give it its window back.
    redis.call('PEXPIRE', KEYS[i], window)
    ttl = window
  elseif ttl < 0 then
    ttl = window
  end
  if count >= limit then
    return {0, i, 0, ttl}
  end
  ttls[i] = ttl
end
local best, best_left = 1, nil
for i = 1, n do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[n + i])
  end
  local left = tonumber(ARGV[i]) - count
  if best_left == nil or left < best_left then
    best, best_left = i, left
  end
end
return {1, best, best_left, ttls[best]}
"""

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
_TIER = re.compile(r"(\d+)/(\d+)([smh])")


@dataclass(frozen=True)
class Tier:
    limit: int
    window_s: int

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_s < 1:
            raise ValueError(f"tier {self.limit}/{self.window_s}s: limit and window must be >= 1")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int | None
    # Every tier that was checked, so headers can describe the whole policy.
    policy: tuple[Tier, ...] = ()


def parse_tiers(text: str) -> tuple[Tier, ...]:
    """'3/1s,20/10s,100/1m' -> tiers. Units s, m, h."""
    tiers = []
    for part in text.split(","):
        match = _TIER.fullmatch(part.strip())
        if match is None:
            raise ValueError(
                f"bad rate limit tier {part.strip()!r} in {text!r}: expected LIMIT/WINDOW "
                "with WINDOW like 1s, 10s, 1m or 1h"
            )
        limit, size, unit = match.groups()
        tiers.append(Tier(int(limit), int(size) * _UNIT_SECONDS[unit]))
    return tuple(tiers)


class RateLimiter:
    def __init__(self, redis: redis.asyncio.Redis, prefix: str = "herald:rl") -> None:
        self._script = redis.register_script(_LUA)
        self._prefix = prefix

    async def hit(self, key: str, tiers: Sequence[Tier]) -> Decision:
        policy = tuple(tiers)
        if not policy:
            raise ValueError("at least one tier is required")
        if len({t.window_s for t in policy}) != len(policy):
            # Tiers sharing a window would share one counter and count each request twice.
            raise ValueError(f"tiers must have distinct windows: {policy}")
        keys = [f"{self._prefix}:{key}:{t.window_s}" for t in policy]
        args = [t.limit for t in policy] + [t.window_s * 1000 for t in policy]
        reply = cast(list[int], await self._script(keys=keys, args=args))
        allowed, index, remaining, ttl_ms = (int(v) for v in reply)
        reset_s = max(1, math.ceil(ttl_ms / 1000))
        return Decision(
            allowed=bool(allowed),
            limit=policy[index - 1].limit,
            remaining=remaining,
            reset_s=reset_s,
            retry_after_s=None if allowed else reset_s,
            policy=policy,
        )


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """IETF RateLimit header fields for a decision, plus Retry-After when it was denied."""
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_s),
    }
    if decision.policy:
        headers["RateLimit-Policy"] = ", ".join(
            f"{t.limit};w={t.window_s}" for t in decision.policy
        )
    if decision.retry_after_s is not None:
        headers["Retry-After"] = str(decision.retry_after_s)
    return headers
