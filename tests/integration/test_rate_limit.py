"""The Redis rate limiter against a real Redis: limits, windows, atomicity and round trips."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio

from infrastructure.rate_limit import (
    Decision,
    RateLimiter,
    Tier,
    parse_tiers,
    rate_limit_headers,
)
from infrastructure.settings import Settings

Scenario = Callable[[RateLimiter, redis.asyncio.Redis], Awaitable[None]]


def run(stack: Settings, scenario: Scenario) -> None:
    """Run an async scenario with a fresh client on the stack's Redis, closing it afterwards."""
    assert stack.redis_url is not None
    url = stack.redis_url.reveal()

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url)
        try:
            await scenario(RateLimiter(client), client)
        finally:
            await client.aclose()

    asyncio.run(main())


def new_key() -> str:
    return f"test:{uuid.uuid4().hex}"


async def hits(limiter: RateLimiter, key: str, tiers: list[Tier], n: int) -> list[Decision]:
    return [await limiter.hit(key, tiers) for _ in range(n)]


def test_calls_within_the_limit_count_down_and_the_next_is_denied(stack: Settings) -> None:
    async def scenario(limiter: RateLimiter, _: redis.asyncio.Redis) -> None:
        key, tiers = new_key(), [Tier(3, 60)]
        allowed = await hits(limiter, key, tiers, 3)
        assert [d.allowed for d in allowed] == [True, True, True]
        assert [d.remaining for d in allowed] == [2, 1, 0]
        assert all(d.limit == 3 and d.retry_after_s is None for d in allowed)
        assert "Retry-After" not in rate_limit_headers(allowed[-1])

        denied = await limiter.hit(key, tiers)
        assert not denied.allowed
        assert (denied.limit, denied.remaining) == (3, 0)
        assert denied.retry_after_s is not None
        assert 1 <= denied.retry_after_s <= 60
        assert rate_limit_headers(denied) == {
            "RateLimit-Limit": "3",
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(denied.reset_s),
            "RateLimit-Policy": "3;w=60",
            "Retry-After": str(denied.retry_after_s),
        }

    run(stack, scenario)


def test_an_allowed_call_reports_the_tier_with_the_fewest_remaining(stack: Settings) -> None:
    async def scenario(limiter: RateLimiter, _: redis.asyncio.Redis) -> None:
        key, tiers = new_key(), [Tier(10, 1), Tier(3, 60)]
        decision = await limiter.hit(key, tiers)
        assert (decision.limit, decision.remaining) == (3, 2)
        assert 58 <= decision.reset_s <= 60
        assert rate_limit_headers(decision)["RateLimit-Policy"] == "10;w=1, 3;w=60"

    run(stack, scenario)


def test_a_denied_call_consumes_nothing_from_any_tier(stack: Settings) -> None:
    async def scenario(limiter: RateLimiter, _: redis.asyncio.Redis) -> None:
        key, tiers = new_key(), [Tier(2, 1), Tier(5, 60)]
        first = await hits(limiter, key, tiers, 5)
        assert [d.allowed for d in first] == [True, True, False, False, False]
        assert all(d.limit == 2 for d in first[2:])

        # Had the three denials counted, the 60 s tier would already be full here.
        await asyncio.sleep(1.1)
        second = await hits(limiter, key, tiers, 2)
        assert [d.allowed for d in second] == [True, True]
        await asyncio.sleep(1.1)
        third = await hits(limiter, key, tiers, 2)
        assert [d.allowed for d in third] == [True, False]
        assert (third[1].limit, third[1].remaining) == (5, 0)
        assert third[1].retry_after_s is not None
        assert third[1].retry_after_s > 50

    run(stack, scenario)


def test_the_limit_resets_when_the_window_passes(stack: Settings) -> None:
    async def scenario(limiter: RateLimiter, _: redis.asyncio.Redis) -> None:
        key, tiers = new_key(), [Tier(2, 1)]
        assert [d.allowed for d in await hits(limiter, key, tiers, 3)] == [True, True, False]
        await asyncio.sleep(1.1)
        after = await limiter.hit(key, tiers)
        assert after.allowed
        assert after.remaining == 1

    run(stack, scenario)


def test_different_keys_are_limited_independently(stack: Settings) -> None:
    async def scenario(limiter: RateLimiter, _: redis.asyncio.Redis) -> None:
        tiers = [Tier(1, 60)]
        busy, other = new_key(), new_key()
        assert (await limiter.hit(busy, tiers)).allowed
        assert not (await limiter.hit(busy, tiers)).allowed
        assert (await limiter.hit(other, tiers)).allowed

    run(stack, scenario)


def test_concurrent_calls_never_exceed_the_limit(stack: Settings) -> None:
    async def scenario(limiter: RateLimiter, _: redis.asyncio.Redis) -> None:
        key, tiers = new_key(), [Tier(10, 60)]
        decisions = await asyncio.gather(*(limiter.hit(key, tiers) for _ in range(50)))
        assert sum(d.allowed for d in decisions) == 10
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))

    run(stack, scenario)


def test_each_check_is_one_script_call(stack: Settings) -> None:
    async def script_calls(client: redis.asyncio.Redis) -> dict[str, int]:
        stats = await client.info("commandstats")
        return {
            name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
            for name in ("evalsha", "eval")
        }

    async def scenario(limiter: RateLimiter, client: redis.asyncio.Redis) -> None:
        key, tiers = new_key(), [Tier(3, 1), Tier(20, 10), Tier(100, 60)]
        await limiter.hit(key, tiers)  # loads the script if this server has not seen it
        before = await script_calls(client)
        await hits(limiter, key, tiers, 5)
        after = await script_calls(client)
        assert after["evalsha"] - before["evalsha"] == 5
        assert after["eval"] == before["eval"]

    run(stack, scenario)


def test_parse_tiers_reads_seconds_minutes_and_hours() -> None:
    assert parse_tiers("3/1s,20/10s,100/1m") == (Tier(3, 1), Tier(20, 10), Tier(100, 60))
    assert parse_tiers(" 5/2h ") == (Tier(5, 7200),)


@pytest.mark.parametrize(
    ("text", "bad_part"),
    [("3/", "'3/'"), ("x/1s", "'x/1s'"), ("3/1d", "'3/1d'"), ("", "''"), ("3/1s,,", "''")],
)
def test_parse_tiers_names_the_bad_part(text: str, bad_part: str) -> None:
    with pytest.raises(ValueError, match="bad rate limit tier") as raised:
        parse_tiers(text)
    assert bad_part in str(raised.value)
