"""The litestar application factory. Roles that serve HTTP build their app here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.types import ASGIApp, ControllerRouterHandler

from infrastructure.log import configure_logging
from infrastructure.resources import Resources, open_resources
from infrastructure.settings import Settings, load_settings
from infrastructure.web.health import HealthController
from infrastructure.web.problems import EXCEPTION_HANDLERS
from infrastructure.web.request_id import RequestIdMiddleware

VERSION = "0.1.0"


def _provide_resources(state: State) -> Resources:
    resources: Resources = state.resources
    return resources


def create_app(
    settings: Settings, extra_handlers: Sequence[ControllerRouterHandler] = ()
) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            yield

    return Litestar(
        route_handlers=[HealthController, *extra_handlers],
        lifespan=[lifespan],
        dependencies={"resources": Provide(_provide_resources, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Herald",
            version=VERSION,
            description="Event-sourced notification backend.",
            path="/docs",
            render_plugins=[ScalarRenderPlugin()],
        ),
        logging_config=None,  # infrastructure.log configures logging for the whole process
    )


def with_request_id(app: Litestar) -> ASGIApp:
    return RequestIdMiddleware(app)


def from_environment() -> ASGIApp:
    """Factory for the HTTP server's worker processes: settings were validated by the parent."""
    settings = load_settings()
    configure_logging(settings, role="api")
    return with_request_id(create_app(settings))
