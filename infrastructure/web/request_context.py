"""What every request carries from its first byte: a request id, the client's address, and the
metadata its events will be stored with; and one access log line when it ends.

X-Request-ID is accepted from the caller or generated, echoed on every response, and bound
to every log line written while the request runs. The client's address is the peer's, or
the one a trusted proxy forwarded for (`forwarded.py`); it replaces the scope's `client`.
The middleware wraps the whole ASGI application, outside the router, so 404 and 405
answers carry the id too.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from infrastructure.eventstore import meta
from infrastructure.log import get_logger
from infrastructure.metrics import HTTP_DURATION, HTTP_IN_FLIGHT
from infrastructure.web.forwarded import TrustedProxies

access_log = get_logger("herald.access")

HEADER = b"x-request-id"
# Caller-supplied ids reach our logs, so only a conservative shape is trusted.
_ACCEPTABLE = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


def incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER and _ACCEPTABLE.match(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


def _user_agent(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope)
        encoded = request_id.encode("ascii")
        client = self.proxies.client(scope)
        peer = scope.get("client")
        if client is not None and peer is not None and peer[0] != client:
            scope["client"] = (client, 0)
        started = time.perf_counter()
        status = 500  # if the app fails before starting a response, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER]
                headers.append((HEADER, encoded))
                message["headers"] = headers
            await send(message)

        with (
            structlog.contextvars.bound_contextvars(request_id=request_id),
            meta.request(ip=client, user_agent=_user_agent(scope), request_id=request_id),
        ):
            HTTP_IN_FLIGHT.inc()
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                HTTP_IN_FLIGHT.dec()
                seconds = time.perf_counter() - started
                # The route's template (set by the router), never the path: bounded labels.
                route = scope.get("path_template") or "unmatched"
                HTTP_DURATION.labels(route, scope["method"], str(status)).observe(seconds)
                access_log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                )
