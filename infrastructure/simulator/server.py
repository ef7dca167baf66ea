"""The simulator's control endpoints, its app, and `herald simulate-providers`."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import msgspec
from litestar import Litestar, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.di import Provide

from infrastructure.log import configure_logging, get_logger
from infrastructure.providers.sandbox import SandboxCredentials, load_sandbox
from infrastructure.settings import Settings, SettingsError, load_settings
from infrastructure.simulator.fcm import fcm_send, oauth_token
from infrastructure.simulator.sendgrid import sendgrid_send
from infrastructure.simulator.state import (
    Simulator,
    SimulatorConfig,
    json_response,
)
from infrastructure.simulator.twilio import twilio_delete, twilio_fetch, twilio_send
from infrastructure.web.problems import FieldError, problem_response

log = get_logger(__name__)

SIMULATOR_APP = "infrastructure.simulator.server:from_environment"


@get("/_simulator/stats", operation_id="simulatorStats")
async def stats(simulator: Simulator) -> dict[str, Any]:
    return simulator.stats()


@get("/_simulator/config", operation_id="simulatorConfig")
async def read_config(simulator: Simulator) -> SimulatorConfig:
    return simulator.config


_AT_FIELD = re.compile(r"`\$\.([A-Za-z_]+)`|unknown field `([^`]+)`")


@put("/_simulator/config", operation_id="simulatorConfigChange")
async def change_config(request: Request[Any, Any, Any], simulator: Simulator) -> Response[Any]:
    """Change some of the settings: fields left out keep their values."""
    try:
        change = msgspec.json.decode(await request.body(), type=dict[str, Any])
        current = msgspec.structs.asdict(simulator.config)
        simulator.config = msgspec.convert({**current, **change}, SimulatorConfig)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        reason = str(exc).replace("`", "")
        found = _AT_FIELD.search(str(exc))
        field = (found.group(1) or found.group(2)) if found else "body"
        return problem_response(request, 400, reason, errors=[FieldError(field, reason)])
    log.info("simulator config changed", **msgspec.structs.asdict(simulator.config))
    return json_response(200, msgspec.to_builtins(simulator.config))


@post("/_simulator/reset", operation_id="simulatorReset", status_code=204)
async def reset(simulator: Simulator) -> None:
    simulator.reset()


def create_simulator_app(settings: Settings, sandbox: SandboxCredentials) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        simulator = Simulator(settings, sandbox)
        app.state.simulator = simulator
        try:
            yield
        finally:
            await simulator.close()

    def provide_simulator(state: State) -> Simulator:
        simulator: Simulator = state.simulator
        return simulator

    return Litestar(
        route_handlers=[
            sendgrid_send,
            twilio_send,
            twilio_fetch,
            twilio_delete,
            oauth_token,
            fcm_send,
            stats,
            read_config,
            change_config,
            reset,
        ],
        lifespan=[lifespan],
        dependencies={"simulator": Provide(provide_simulator, sync_to_thread=False)},
        openapi_config=None,
        logging_config=None,  # infrastructure.log configures logging for the whole process
    )


def from_environment() -> Litestar:
    """Factory for the server's worker process: settings were validated by the parent."""
    settings = load_settings()
    configure_logging(settings, role="simulator")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per webhook post otherwise
    return create_simulator_app(settings, load_sandbox(settings))


def serve_simulator(settings: Settings) -> None:
    """Serve the simulator on HERALD_SIMULATOR_URL in the foreground until SIGINT or SIGTERM."""
    from granian import Granian  # noqa: PLC0415 - only this command needs the server
    from granian.constants import Interfaces  # noqa: PLC0415

    url = urlsplit(settings.simulator_url)
    if url.scheme != "http" or url.hostname is None:
        raise SettingsError(
            "HERALD_SIMULATOR_URL", "must be http://HOST:PORT to serve", "http://127.0.0.1:8025"
        )
    load_sandbox(settings)  # made here once, before the worker reads it
    config = SimulatorConfig.from_settings(settings)
    log.info(
        "provider simulator listening",
        url=settings.simulator_url,
        webhooks_to=settings.public_url,
        **msgspec.structs.asdict(config),
    )
    Granian(
        target=SIMULATOR_APP,
        factory=True,
        address=url.hostname,
        port=url.port or 80,
        interface=Interfaces.ASGI,
        workers=1,  # the counters live in the worker's memory
        log_enabled=False,
        workers_kill_timeout=2,  # calls held to simulate timeouts need not be waited for
    ).serve()
