"""The api's HTTP spans: litestar's OpenTelemetry plugin, with what would name a person
taken out.

OpenTelemetry's ASGI instrumentation records the full URL, the client's address and user
agent, and litestar's plugin names the span by the path. Herald's paths and query strings may
hold an address (`/data-pipeline/anonymize/{subject}`, `?recipient=`), and Herald counts the
client's address and user agent as personal data (docs/privacy.md), so the server span is
named by the route's template (as the router matches it), keeps the template instead of the
path, and `[redacted]` for the others. Probes and scrapes (`/health`, `/metrics`) are not
traced.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.types import ASGIApp, Receive, Scope, Send
from opentelemetry import context
from opentelemetry.trace import Span

from infrastructure.tracing import chosen_for_tracing, untraced_context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

REDACTED = "[redacted]"
# Attribute names of the old and the stable HTTP semantic conventions alike.
_PATHS = ("http.target", "http.url", "url.full", "url.path")
_PERSONAL = (
    "url.query",
    "http.user_agent",
    "user_agent.original",
    "net.peer.ip",
    "net.peer.port",
    "client.address",
    "client.port",
    "http.client_ip",
    "net.sock.peer.addr",
    "net.sock.peer.port",
    "network.peer.address",
    "network.peer.port",
)


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The span's name and route: the method and the template the router matches."""
    route = _template(scope)
    return f"{scope.get('method', '')} {route}".strip(), {"http.route": route}


def _template(scope: Scope) -> str:
    app = scope.get("litestar_app")
    try:
        *_, template = app.asgi_router.handle_routing(
            path=scope["path"], method=scope.get("method")
        )
    except Exception:  # no route: a 404 or 405, answered as such by the router
        return "unmatched"
    return str(template)


def _impersonal(span: Span, scope: dict[str, Any]) -> None:
    """Before the request runs: the route template for the path, nothing of the client."""
    attributes = getattr(span, "attributes", None) or {}
    route = str(attributes.get("http.route", "unmatched"))
    for name in _PATHS:
        if name in attributes:
            span.set_attribute(name, route)
    for name in _PERSONAL:
        if name in attributes:
            span.set_attribute(name, REDACTED)


def tracing_plugin(provider: TracerProvider) -> OpenTelemetryPlugin:
    return OpenTelemetryPlugin(
        OpenTelemetryConfig(
            tracer_provider=provider,
            scope_span_details_extractor=_span_details,
            server_request_hook_handler=_impersonal,
            exclude=[r"^/health", r"^/metrics$"],
            exclude_spans=["receive", "send"],
        )
    )


class EntrySampling:
    """Which requests are traced, decided as each arrives and before any span is made:
    HERALD_TRACE_SAMPLE_RATIO of them, or as the caller's own `traceparent` says. A request
    not chosen runs with every instrumentation suppressed, so at a low ratio tracing costs
    almost nothing on the requests it leaves out."""

    def __init__(self, app: ASGIApp, ratio: float) -> None:
        self.app = app
        self.ratio = ratio
        self.rng = random.Random()  # noqa: S311 - sampling, not secrecy
        # A request starts with no OpenTelemetry context of its own, so the suppressing one
        # can replace it whole: one attach, instead of `untraced`'s context managers.
        self.untraced = untraced_context()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or chosen_for_tracing(
            _header(scope, b"traceparent"), self.ratio, self.rng
        ):
            await self.app(scope, receive, send)
            return
        token = context.attach(self.untraced)
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None
