"""Settings every role reads: logging, HTTP, servers, pools, timeouts, the dev directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from infrastructure.settings.values import Secret, SettingsError, env_name, example_of, setting

Port = Annotated[int, setting("TCP port the HTTP API listens on.", "8000", ge=1, le=65535)]

_HttpBase = Annotated[str, msgspec.Meta(pattern=r"^https?://[^/\s]+/?$")]
_POSTGRES_URL = r"^postgres(ql)?://"
_REDIS_URL = r"^(redis|rediss|unix)://"
_BOOTSTRAP = r"^[A-Za-z0-9_.\-\[\]:]+:\d+(,[A-Za-z0-9_.\-\[\]:]+:\d+)*$"


class MissingServerError(Exception):
    """A role was asked to run without a server URL it needs."""


class ServiceSettings(msgspec.Struct, frozen=True, kw_only=True):
    env: Annotated[
        Literal["dev", "production"],
        setting("Deployment kind: 'dev' logs for humans, 'production' logs JSON lines.", "dev"),
    ] = "dev"
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"],
        setting("Lowest log level written.", "info"),
    ] = "info"
    log_format: Annotated[
        Literal["auto", "console", "json"],
        setting("Log renderer; 'auto' means console in dev and json in production.", "auto"),
    ] = "auto"
    log_sample_info: Annotated[
        float,
        setting(
            "Share of info and debug lines written in production (JSON) logs, 0 to 1; "
            "warnings and errors are always written.",
            "0.1",
            ge=0.0,
            le=1.0,
        ),
    ] = 1.0
    otlp_endpoint: Annotated[
        _HttpBase | None,
        setting(
            "OTLP/HTTP endpoint traces are exported to (its /v1/traces); unset: no tracing.",
            "http://jaeger:4318",
        ),
    ] = None
    trace_sample_ratio: Annotated[
        float,
        setting(
            "Share of traces recorded, 0 to 1, decided where a trace starts (an api request) "
            "and followed by every span in it.",
            "0.01",
            ge=0.0,
            le=1.0,
        ),
    ] = 1.0
    http_host: Annotated[
        str, setting("Address the HTTP API binds to.", "127.0.0.1", min_length=1)
    ] = "127.0.0.1"
    http_port: Port = 8000
    http_workers: Annotated[
        int, setting("HTTP worker processes for the api role.", "2", ge=1, le=64)
    ] = 1
    metrics_host: Annotated[
        str,
        setting(
            "Address the relay, projector, dispatcher and scheduler serve /metrics and "
            "/health/* on.",
            "0.0.0.0",  # noqa: S104 - the example is a container's
            min_length=1,
        ),
    ] = "127.0.0.1"
    metrics_port: Annotated[
        int,
        setting(
            "Port the relay, projector, dispatcher and scheduler serve /metrics, "
            "/health/liveness and /health/readiness on; 0: not served. One per process: "
            "roles sharing a host need a port each (`herald dev` assigns them).",
            "9464",
            ge=0,
            le=65535,
        ),
    ] = 0
    database_url: Annotated[
        Secret | None,
        setting(
            "PostgreSQL URL. Unset in dev: an embedded server is started.",
            "postgresql://herald:secret@db:5432/herald",
        ),
    ] = None
    redis_url: Annotated[
        Secret | None,
        setting("Redis URL. Unset in dev: an embedded server is started.", "redis://cache:6379/0"),
    ] = None
    kafka_bootstrap: Annotated[
        Annotated[str, msgspec.Meta(pattern=_BOOTSTRAP)] | None,
        setting(
            "Kafka bootstrap servers, host:port[,host:port]. Unset in dev: an embedded broker "
            "is started.",
            "kafka:9092",
        ),
    ] = None
    namespace: Annotated[
        str,
        setting(
            "Prefix of Herald's Kafka topics, consumer groups and Redis keys, so that several "
            "deployments can share one broker and one Redis.",
            "herald",
            pattern=r"^[a-z][a-z0-9-]{0,31}$",
        ),
    ] = "herald"
    read_wait_ms: Annotated[
        int,
        setting(
            "How long a read with min_position waits for the read models to reach it before "
            "answering 503, in ms.",
            "2000",
            ge=0,
            le=30000,
        ),
    ] = 2000
    kafka_partitions: Annotated[
        int,
        setting("Partitions of the notification topic when Herald creates it.", "6", ge=1, le=1024),
    ] = 6
    db_pool_min_size: Annotated[
        int, setting("Connections each process keeps open to PostgreSQL.", "1", ge=0, le=100)
    ] = 1
    db_pool_max_size: Annotated[
        int, setting("Most connections each process opens to PostgreSQL.", "10", ge=1, le=500)
    ] = 10
    health_timeout_ms: Annotated[
        int,
        setting("How long /health waits for each dependency, in ms.", "1000", ge=50, le=30000),
    ] = 1000
    dev_dir: Annotated[
        str,
        setting("Where `herald dev` keeps embedded server data and logs.", ".herald", min_length=1),
    ] = ".herald"

    def check_service(self) -> None:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise SettingsError(
                "HERALD_DB_POOL_MIN_SIZE",
                f"must not exceed HERALD_DB_POOL_MAX_SIZE ({self.db_pool_max_size})",
                str(self.db_pool_max_size),
            )
        for name, secret, pattern in (
            ("database_url", self.database_url, _POSTGRES_URL),
            ("redis_url", self.redis_url, _REDIS_URL),
        ):
            if secret is not None and not re.match(pattern, secret.reveal()):
                raise SettingsError(
                    env_name(name),
                    "is not a URL of the expected scheme",
                    example_of(ServiceSettings, name),
                )

    @property
    def json_logs(self) -> bool:
        if self.log_format == "auto":
            return self.env == "production"
        return self.log_format == "json"

    @property
    def dev_path(self) -> Path:
        return Path(self.dev_dir).expanduser().resolve()


def require_servers(settings: ServiceSettings) -> tuple[str, str, str]:
    """The three server URLs, or `MissingServerError` naming the first unset variable."""
    if settings.database_url is None:
        raise MissingServerError("HERALD_DATABASE_URL")
    if settings.redis_url is None:
        raise MissingServerError("HERALD_REDIS_URL")
    if settings.kafka_bootstrap is None:
        raise MissingServerError("HERALD_KAFKA_BOOTSTRAP")
    return settings.database_url.reveal(), settings.redis_url.reveal(), settings.kafka_bootstrap
