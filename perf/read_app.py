"""The api app plus the baseline of `perf read`: a no-op GET behind the same guard."""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import get
from litestar.params import FromPath
from litestar.types import ASGIApp

from infrastructure.entrypoints.app import asgi_app
from infrastructure.log import configure_logging
from infrastructure.settings import load_settings
from read_api.notifications.http import READERS


class Found(msgspec.Struct, frozen=True):
    id: UUID
    status: str


@get(
    "/bench/noop/{notification_id:uuid}",
    policy=READERS,
    sync_to_thread=False,
    include_in_schema=False,
)
def noop(notification_id: FromPath[UUID]) -> Found:
    return Found(notification_id, "requested")


def from_environment() -> ASGIApp:
    settings = load_settings()
    configure_logging(settings)
    return asgi_app(settings, extra_handlers=[noop])
