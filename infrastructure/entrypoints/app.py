"""The litestar application factory and its route list: the api role's HTTP app.

Routes ask for their collaborators by name (`commands`, `reader`, `viewer`, ...); this
module provides each name once, from what `open_api_process` opened in the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import InitPluginProtocol
from litestar.types import ASGIApp, ControllerRouterHandler

from commands.exports.http import ROUTES as EXPORT_COMMANDS
from commands.identity.http import ROUTES as IDENTITY_COMMANDS
from commands.jobs.http import ROUTES as JOB_COMMANDS
from commands.notifications.http import ROUTES as NOTIFICATION_COMMANDS
from commands.privacy.http import ROUTES as PRIVACY_COMMANDS
from commands.retention.http import ROUTES as RETENTION_COMMANDS
from commands.webhooks.http import ROUTES as WEBHOOKS
from commands.webhooks.http import Intake
from infrastructure.auth.guard import (
    POLICY,
    PUBLIC,
    add_rate_limit_headers,
    authorize,
    provide_gate,
)
from infrastructure.entrypoints.api_process import open_api_process
from infrastructure.eventstore.codec import EventCodec
from infrastructure.log import configure_logging
from infrastructure.providers.webhook_signatures import WebhookVerifier
from infrastructure.settings import Settings, load_settings
from infrastructure.tracing import configure_tracing, tracing
from infrastructure.web.commands import provide_commands
from infrastructure.web.contract import ProblemResponses, complete_document
from infrastructure.web.forwarded import TrustedProxies
from infrastructure.web.hardening import DOCS_PREFIX, add_security_headers
from infrastructure.web.health import HealthController
from infrastructure.web.methods import correct_allow
from infrastructure.web.problems import EXCEPTION_HANDLERS
from infrastructure.web.request_context import RequestContextMiddleware
from infrastructure.web.struct_schemas import StructSchemas
from read_api.admin.http import ROUTES as ADMIN_QUERIES
from read_api.admin.jobs import ROUTES as JOB_QUERIES
from read_api.admin.prometheus import ROUTES as PROMETHEUS
from read_api.audit.audit_log import ROUTES as AUDIT_LOG_QUERIES
from read_api.audit.http import ROUTES as AUDIT_QUERIES
from read_api.exports.http import ROUTES as EXPORT_QUERIES
from read_api.identity.http import ROUTES as IDENTITY_QUERIES
from read_api.notifications.http import ROUTES as NOTIFICATION_QUERIES
from read_api.privacy.http import ROUTES as PRIVACY_QUERIES
from read_api.retention.archive_stats import ROUTES as ARCHIVE_QUERIES
from read_api.retention.http import ROUTES as RETENTION_QUERIES
from read_api.viewing import provide_reader, provide_viewer

ROUTES: list[ControllerRouterHandler] = [
    HealthController,
    *IDENTITY_COMMANDS,
    *NOTIFICATION_COMMANDS,
    *WEBHOOKS,
    *IDENTITY_QUERIES,
    *NOTIFICATION_QUERIES,
    *AUDIT_QUERIES,
    *AUDIT_LOG_QUERIES,
    *ADMIN_QUERIES,
    *EXPORT_COMMANDS,
    *EXPORT_QUERIES,
    *RETENTION_COMMANDS,
    *RETENTION_QUERIES,
    *ARCHIVE_QUERIES,
    *PRIVACY_COMMANDS,
    *PRIVACY_QUERIES,
    *JOB_COMMANDS,
    *JOB_QUERIES,
    *PROMETHEUS,
]
REVOCATION_SYNC_WAIT_S = 2.0

VERSION = "0.1.0"


# Opened in the lifespan and kept on the app's state under these names; `bus` and
# `read_models` reach routes inside `commands`, `reader` and `viewer`.
OPENED = ("operations", "health")
_VERIFIER = "verifier"


def _opened(name: str) -> Provide:
    def provide(state: State) -> Any:
        return state[name]

    return Provide(provide, sync_to_thread=False)


def _intake(settings: Settings) -> Provide:
    """The webhooks' dependency. Its verifier is built on first use, once per app: the
    sandbox keys live in the dev directory, which an api that never receives a webhook
    should not have to create."""

    def provide(request: Request[Any, Any, Any]) -> Intake:
        state = request.app.state
        verifier = state.get(_VERIFIER)
        if not isinstance(verifier, WebhookVerifier):
            verifier = WebhookVerifier.from_settings(settings)
            state[_VERIFIER] = verifier
        return Intake(verifier, provide_commands(request))

    return Provide(provide, sync_to_thread=False)


def dependencies(settings: Settings) -> dict[str, Provide]:
    """Each name a route may ask for. A route asks for one where it can: litestar resolves
    several dependencies of one handler in a task group, at a cost a hot route notices."""
    return {
        **{name: _opened(name) for name in OPENED},
        "commands": Provide(provide_commands, sync_to_thread=False),
        "reader": Provide(provide_reader),
        "viewer": Provide(provide_viewer, sync_to_thread=False),
        "gate": Provide(provide_gate, sync_to_thread=False),
        "intake": _intake(settings),
    }


def create_app(
    settings: Settings,
    extra_handlers: Sequence[ControllerRouterHandler] = (),
    codec: EventCodec | None = None,
) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_api_process(settings, codec) as process:
            app.state.gate = process.gate
            for name, value in process.dependencies.items():
                app.state[name] = value
            # Serve only once the revocation denylist is mirrored, unless Redis is away;
            # then /health says so and the feed catches up when it returns.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.revocations.synced.wait(), REVOCATION_SYNC_WAIT_S)
            yield

    origins = settings.cors_origin_list
    app = Litestar(
        plugins=[ProblemResponses(), StructSchemas(), *_plugins(settings)],
        route_handlers=[*ROUTES, *extra_handlers],
        lifespan=[lifespan],
        guards=[authorize],
        before_send=[add_security_headers, add_rate_limit_headers, correct_allow],
        dependencies=dependencies(settings),
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=CORSConfig(allow_origins=origins, allow_credentials=False) if origins else None,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Herald",
            version=VERSION,
            description="Event-sourced notification backend.",
            render_plugins=[ScalarRenderPlugin()],
            openapi_router=Router(
                path=DOCS_PREFIX, route_handlers=[], opt={POLICY: PUBLIC}, include_in_schema=False
            ),
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            security=[{"bearer": []}],
        ),
        logging_config=None,  # infrastructure.log configures logging for the whole process
    )
    complete_document(app)
    return app


def _plugins(settings: Settings) -> list[InitPluginProtocol]:
    """Tracing's, when HERALD_OTLP_ENDPOINT is set (imported only then)."""
    provider = configure_tracing(settings, "api")
    if provider is None:
        return []
    from infrastructure.web.tracing_plugin import tracing_plugin  # noqa: PLC0415

    return [tracing_plugin(provider)]


def asgi_app(
    settings: Settings,
    extra_handlers: Sequence[ControllerRouterHandler] = (),
    codec: EventCodec | None = None,
) -> ASGIApp:
    """The app as servers run it: inside the request-context middleware."""
    proxies = TrustedProxies(settings.trusted_proxy_networks)
    app: ASGIApp = create_app(settings, extra_handlers, codec)
    if tracing():  # create_app set it up, HERALD_OTLP_ENDPOINT being set
        from infrastructure.web.tracing_plugin import EntrySampling  # noqa: PLC0415

        app = EntrySampling(app, settings.trace_sample_ratio)
    return RequestContextMiddleware(app, proxies)


def from_environment() -> ASGIApp:
    """Factory for the HTTP server's worker processes: settings were validated by the parent."""
    settings = load_settings()
    configure_logging(settings, role="api")
    return asgi_app(settings)
