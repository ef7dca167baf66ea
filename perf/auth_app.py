"""The api app plus two identical GETs: one anyone may call, one that needs a token."""

from __future__ import annotations

from litestar import get
from litestar.types import ASGIApp

from domain.identity.roles import Role
from infrastructure.auth.guard import PUBLIC, allow
from infrastructure.entrypoints.app import asgi_app
from infrastructure.log import configure_logging
from infrastructure.settings import load_settings

PAYLOAD = {"status": "ok", "service": "herald"}


@get("/bench/open", policy=PUBLIC, sync_to_thread=False, include_in_schema=False)
def open_ping() -> dict[str, str]:
    return PAYLOAD


@get("/bench/protected", policy=allow(*Role), sync_to_thread=False, include_in_schema=False)
def protected_ping() -> dict[str, str]:
    return PAYLOAD


def from_environment() -> ASGIApp:
    settings = load_settings()
    configure_logging(settings)
    return asgi_app(settings, extra_handlers=[open_ping, protected_ping])
