"""Health endpoints: full dependency report, and the liveness and readiness probes Kubernetes uses.

`/health` runs its probes (PostgreSQL, Redis and the broker) concurrently, each bounded by
HERALD_HEALTH_TIMEOUT_MS, and answers 503 naming whatever is down. It also shows each
provider's mode (live, or the sandbox simulator) and its circuit breaker's state, and how far
the relay and each projection are behind the log, as the composition root tells it
(`HealthChecks`). Liveness never looks at dependencies (a
restart would not mend them). Readiness fails only without PostgreSQL: commands need nothing
else, reads fall back to PostgreSQL while Redis is down, and the relay holds what the broker
cannot take yet, so an api without Redis or the broker should still be sent traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import msgspec
import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from psycopg_pool import AsyncConnectionPool

from infrastructure.auth.guard import PROBE


class DependencyHealth(msgspec.Struct, frozen=True, omit_defaults=True):
    status: Literal["up", "down"]
    latency_ms: float
    error: str | None = None


class ProviderHealth(msgspec.Struct, frozen=True):
    mode: str  # "live", or "sandbox": calls go to the provider simulator
    circuit: str  # "closed", "open", "half_open"; "unknown" while Redis is down


class FollowerHealth(msgspec.Struct, frozen=True):
    position: int  # the last log position it handled
    lag_events: int  # events of its kinds stored after that (at most 1,000,000)
    lag_seconds: float  # the age of the oldest of them; 0 when none waits


class HealthReport(msgspec.Struct, frozen=True):
    status: Literal["pass", "fail"]
    checks: dict[str, DependencyHealth]
    failing: list[str]
    detail: str
    # An open circuit degrades one channel; it does not make Herald unhealthy.
    providers: dict[str, ProviderHealth]
    # How far the relay and each projection are behind the log (empty while PostgreSQL is
    # down). A lag degrades freshness; it does not make the api unhealthy.
    followers: dict[str, FollowerHealth] = msgspec.field(default_factory=dict)


class Liveness(msgspec.Struct, frozen=True):
    status: Literal["pass"] = "pass"


Probe = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class HealthChecks:
    """The `health` dependency: what to probe, and how to learn the providers' state."""

    probes: dict[str, Probe]  # by dependency name; each raises when it is down
    timeout_s: float
    provider_modes: dict[str, str]  # "live" or "sandbox", per provider
    # Per provider: "closed", "open" or "half_open"; needs Redis.
    provider_circuits: Callable[[], Awaitable[dict[str, str]]]
    # The relay's and each projection's position and lag; needs PostgreSQL.
    followers: Callable[[], Awaitable[dict[str, FollowerHealth]]] | None = None


def postgres_probe(pool: AsyncConnectionPool) -> Probe:
    async def probe() -> None:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")

    return probe


def redis_probe(client: aioredis.Redis) -> Probe:
    async def probe() -> None:
        await client.ping()

    return probe


def kafka_probe(admin: AdminClient, timeout_s: float) -> Probe:
    async def probe() -> None:
        await asyncio.to_thread(admin.list_topics, timeout=timeout_s)

    return probe


async def _probe(check: Probe, timeout_s: float) -> DependencyHealth:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return DependencyHealth("down", _ms_since(started), "timed out")
    except Exception as exc:
        return DependencyHealth("down", _ms_since(started), type(exc).__name__)
    return DependencyHealth("up", _ms_since(started))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def check_health(checks: HealthChecks) -> HealthReport:
    names = list(checks.probes)
    results = await asyncio.gather(*(_probe(checks.probes[n], checks.timeout_s) for n in names))
    probed = dict(zip(names, results, strict=True))
    failing = [name for name, result in probed.items() if result.status == "down"]
    detail = f"down: {', '.join(failing)}" if failing else "all dependencies up"
    redis_up = "redis" in probed and probed["redis"].status == "up"
    providers = await _providers(checks, redis_up=redis_up)
    followers: dict[str, FollowerHealth] = {}
    postgres_up = "postgres" in probed and probed["postgres"].status == "up"
    if postgres_up and checks.followers is not None:
        with contextlib.suppress(Exception):
            followers = await asyncio.wait_for(checks.followers(), checks.timeout_s)
    status: Literal["pass", "fail"] = "fail" if failing else "pass"
    return HealthReport(status, probed, failing, detail, providers, followers)


async def _providers(checks: HealthChecks, *, redis_up: bool) -> dict[str, ProviderHealth]:
    modes = checks.provider_modes
    circuits = {name: "unknown" for name in modes}
    if redis_up:
        with contextlib.suppress(Exception):
            found = await asyncio.wait_for(checks.provider_circuits(), checks.timeout_s)
            circuits = {name: found.get(name, "unknown") for name in modes}
    return {name: ProviderHealth(mode, circuits[name]) for name, mode in modes.items()}


# The report again, with `failing` naming what is down: not a problem, a probe's answer.
_DOWN = {
    HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
        data_container=HealthReport,
        description="Some dependency is down; `failing` names it.",
        generate_examples=False,
    )
}


ESSENTIAL = frozenset({"postgres"})  # what the api cannot serve without


def _report_response(
    report: HealthReport, needed: frozenset[str] | None = None
) -> Response[HealthReport]:
    """503 when any of `needed` (every dependency when None) is down."""
    down = set(report.failing) if needed is None else set(report.failing) & needed
    status = HTTP_503_SERVICE_UNAVAILABLE if down else HTTP_200_OK
    return Response(report, status_code=status, headers={"Cache-Control": "no-store"})


class HealthController(Controller):
    path = "/health"
    tags = ["health"]  # noqa: RUF012 - litestar reads it as a class attribute

    @get(
        policy=PROBE,
        operation_id="getHealth",
        responses=_DOWN,
        summary="Each dependency's status and latency; 503 names whatever is down.",
    )
    async def health(self, health: NamedDependency[HealthChecks]) -> Response[HealthReport]:
        return _report_response(await check_health(health))

    @get(
        "/liveness",
        policy=PROBE,
        operation_id="getLiveness",
        summary="200 while the process can serve requests at all.",
    )
    async def liveness(self) -> Liveness:
        return Liveness()

    @get(
        "/readiness",
        policy=PROBE,
        operation_id="getReadiness",
        responses=_DOWN,
        summary="200 when PostgreSQL answers, so traffic may be routed here.",
        description="Redis or the broker down is reported in `failing` but only degrades "
        "the api: reads come from PostgreSQL, and the relay publishes once the broker is back.",
    )
    async def readiness(self, health: NamedDependency[HealthChecks]) -> Response[HealthReport]:
        return _report_response(await check_health(health), ESSENTIAL)
