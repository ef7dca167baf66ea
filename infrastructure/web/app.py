"""The litestar application factory. Roles that serve HTTP build their app here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, ControllerRouterHandler

from commands.identity.http import ROUTES as IDENTITY_COMMANDS
from commands.notifications.http import ROUTES as NOTIFICATION_COMMANDS
from commands.webhooks.http import ROUTES as WEBHOOKS
from infrastructure.auth.guard import POLICY, PUBLIC, add_rate_limit_headers, authorize
from infrastructure.auth.http import TokenController
from infrastructure.log import configure_logging
from infrastructure.resources import Resources, open_resources
from infrastructure.settings import Settings, load_settings
from infrastructure.web.hardening import DOCS_PREFIX, add_security_headers
from infrastructure.web.health import HealthController
from infrastructure.web.problems import EXCEPTION_HANDLERS
from infrastructure.web.prometheus import prometheus_metrics
from infrastructure.web.request_id import RequestIdMiddleware
from read_api.admin.http import ROUTES as ADMIN_QUERIES
from read_api.audit.http import ROUTES as AUDIT_QUERIES
from read_api.identity.http import ROUTES as IDENTITY_QUERIES
from read_api.notifications.http import ROUTES as NOTIFICATION_QUERIES

ROUTES: list[ControllerRouterHandler] = [
    HealthController,
    TokenController,
    *IDENTITY_COMMANDS,
    *NOTIFICATION_COMMANDS,
    *WEBHOOKS,
    *IDENTITY_QUERIES,
    *NOTIFICATION_QUERIES,
    *AUDIT_QUERIES,
    *ADMIN_QUERIES,
    prometheus_metrics,
]
REVOCATION_SYNC_WAIT_S = 2.0

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
            app.state.gate = resources.gate
            # Serve only once the revocation denylist is mirrored, unless Redis is away;
            # then /health says so and the feed catches up when it returns.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(resources.revocations.synced.wait(), REVOCATION_SYNC_WAIT_S)
            yield

    origins = settings.cors_origin_list
    return Litestar(
        route_handlers=[*ROUTES, *extra_handlers],
        lifespan=[lifespan],
        guards=[authorize],
        before_send=[add_security_headers, add_rate_limit_headers],
        dependencies={"resources": Provide(_provide_resources, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=CORSConfig(allow_origins=origins, allow_credentials=False) if origins else None,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Herald",
            version=VERSION,
            description="Event-sourced notification backend.",
            render_plugins=[ScalarRenderPlugin()],
            openapi_router=Router(path=DOCS_PREFIX, route_handlers=[], opt={POLICY: PUBLIC}),
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            security=[{"bearer": []}],
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
