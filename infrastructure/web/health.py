"""Health endpoints: full dependency report, and the liveness and readiness probes Kubernetes uses.

`/health` probes PostgreSQL, Redis and the broker concurrently, each bounded by
HERALD_HEALTH_TIMEOUT_MS, and answers 503 naming whatever is down. It also shows each
provider's mode (live, or the sandbox simulator) and its circuit breaker's state.
Liveness never looks at dependencies (a restart would not mend them); readiness does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from infrastructure.auth.guard import PROBE
from infrastructure.delivery.protection import breaker_states
from infrastructure.delivery.sandbox import provider_modes
from infrastructure.resources import Resources


class DependencyHealth(msgspec.Struct, frozen=True, omit_defaults=True):
    status: Literal["up", "down"]
    latency_ms: float
    error: str | None = None


class ProviderHealth(msgspec.Struct, frozen=True):
    mode: str  # "live", or "sandbox": calls go to the provider simulator
    circuit: str  # "closed", "open", "half_open"; "unknown" while Redis is down


class HealthReport(msgspec.Struct, frozen=True):
    status: Literal["pass", "fail"]
    checks: dict[str, DependencyHealth]
    failing: list[str]
    detail: str
    # An open circuit degrades one channel; it does not make Herald unhealthy.
    providers: dict[str, ProviderHealth]


class Liveness(msgspec.Struct, frozen=True):
    status: Literal["pass"] = "pass"


async def _postgres(resources: Resources) -> None:
    async with resources.db.connection() as conn:
        await conn.execute("SELECT 1")


async def _redis(resources: Resources) -> None:
    await resources.redis.ping()


async def _kafka(resources: Resources) -> None:
    timeout = resources.settings.health_timeout_ms / 1000
    await asyncio.to_thread(resources.kafka_admin.list_topics, timeout=timeout)


PROBES: dict[str, Callable[[Resources], Awaitable[None]]] = {
    "postgres": _postgres,
    "redis": _redis,
    "kafka": _kafka,
}


async def _probe(
    resources: Resources, check: Callable[[Resources], Awaitable[None]]
) -> DependencyHealth:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(resources), resources.settings.health_timeout_ms / 1000)
    except TimeoutError:
        return DependencyHealth("down", _ms_since(started), "timed out")
    except Exception as exc:
        return DependencyHealth("down", _ms_since(started), type(exc).__name__)
    return DependencyHealth("up", _ms_since(started))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def check_health(resources: Resources) -> HealthReport:
    names = list(PROBES)
    results = await asyncio.gather(*(_probe(resources, PROBES[n]) for n in names))
    checks = dict(zip(names, results, strict=True))
    failing = [name for name, result in checks.items() if result.status == "down"]
    detail = f"down: {', '.join(failing)}" if failing else "all dependencies up"
    providers = await _providers(resources, redis_up=checks["redis"].status == "up")
    return HealthReport("fail" if failing else "pass", checks, failing, detail, providers)


async def _providers(resources: Resources, *, redis_up: bool) -> dict[str, ProviderHealth]:
    modes = provider_modes(resources.settings)
    circuits = {name: "unknown" for name in modes}
    if redis_up:
        with contextlib.suppress(Exception):
            states = await asyncio.wait_for(
                breaker_states(resources.redis, resources.settings.namespace, list(modes)),
                resources.settings.health_timeout_ms / 1000,
            )
            circuits = {name: str(state["state"]) for name, state in states.items()}
    return {name: ProviderHealth(mode, circuits[name]) for name, mode in modes.items()}


def _report_response(report: HealthReport) -> Response[HealthReport]:
    status = HTTP_503_SERVICE_UNAVAILABLE if report.failing else HTTP_200_OK
    return Response(report, status_code=status, headers={"Cache-Control": "no-store"})


class HealthController(Controller):
    path = "/health"
    tags = ["health"]  # noqa: RUF012 - litestar reads it as a class attribute

    @get(
        policy=PROBE,
        operation_id="getHealth",
        summary="Each dependency's status and latency; 503 names whatever is down.",
    )
    async def health(self, resources: NamedDependency[Resources]) -> Response[HealthReport]:
        return _report_response(await check_health(resources))

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
        summary="200 when every dependency answers, so traffic may be routed here.",
    )
    async def readiness(self, resources: NamedDependency[Resources]) -> Response[HealthReport]:
        return _report_response(await check_health(resources))
