"""The api app for `perf ingest`'s baseline without sealing: the same app, its codec swapped
for one that stores personal fields as they are."""

from __future__ import annotations

from litestar.types import ASGIApp

from infrastructure.entrypoints.app import asgi_app
from infrastructure.eventstore import catalog
from infrastructure.log import configure_logging
from infrastructure.settings import load_settings


def unsealed() -> ASGIApp:
    settings = load_settings()
    configure_logging(settings, role="api")
    return asgi_app(settings, codec=catalog.codec())
