"""Herald's one typed settings object, read from HERALD_* variables and an optional .env file.

Every module receives a `Settings` instance; none reads `os.environ` on its own.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec
from dotenv import dotenv_values

from infrastructure.web.rate_limit import parse_tiers

PREFIX = "HERALD_"
MIN_SECRET_BYTES = 32


class Secret:
    """A value that must never reach a log line or an error message."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redacted(self) -> str:
        """The value with any URL password masked; safe to print."""
        return redact_url(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _setting(description: str, example: str, **constraints: Any) -> msgspec.Meta:
    return msgspec.Meta(description=description, examples=[example], **constraints)


Port = Annotated[int, _setting("TCP port the HTTP API listens on.", "8000", ge=1, le=65535)]

_POSTGRES_URL = r"^postgres(ql)?://"
_REDIS_URL = r"^(redis|rediss|unix)://"
_BOOTSTRAP = r"^[A-Za-z0-9_.\-\[\]:]+:\d+(,[A-Za-z0-9_.\-\[\]:]+:\d+)*$"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    env: Annotated[
        Literal["dev", "production"],
        _setting("Deployment kind: 'dev' logs for humans, 'production' logs JSON lines.", "dev"),
    ] = "dev"
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"],
        _setting("Lowest log level written.", "info"),
    ] = "info"
    log_format: Annotated[
        Literal["auto", "console", "json"],
        _setting("Log renderer; 'auto' means console in dev and json in production.", "auto"),
    ] = "auto"
    http_host: Annotated[
        str, _setting("Address the HTTP API binds to.", "127.0.0.1", min_length=1)
    ] = "127.0.0.1"
    http_port: Port = 8000
    http_workers: Annotated[
        int, _setting("HTTP worker processes for the api role.", "2", ge=1, le=64)
    ] = 1
    database_url: Annotated[
        Secret | None,
        _setting(
            "PostgreSQL URL. Unset in dev: an embedded server is started.",
            "postgresql://herald:secret@db:5432/herald",
        ),
    ] = None
    redis_url: Annotated[
        Secret | None,
        _setting("Redis URL. Unset in dev: an embedded server is started.", "redis://cache:6379/0"),
    ] = None
    kafka_bootstrap: Annotated[
        Annotated[str, msgspec.Meta(pattern=_BOOTSTRAP)] | None,
        _setting(
            "Kafka bootstrap servers, host:port[,host:port]. Unset in dev: an embedded broker "
            "is started.",
            "kafka:9092",
        ),
    ] = None
    namespace: Annotated[
        str,
        _setting(
            "Prefix of Herald's Kafka topics, consumer groups and Redis keys, so that several "
            "deployments can share one broker and one Redis.",
            "herald",
            pattern=r"^[a-z][a-z0-9-]{0,31}$",
        ),
    ] = "herald"
    read_wait_ms: Annotated[
        int,
        _setting(
            "How long a read with min_position waits for the read models to reach it before "
            "answering 503, in ms.",
            "2000",
            ge=0,
            le=30000,
        ),
    ] = 2000
    kafka_partitions: Annotated[
        int,
        _setting(
            "Partitions of the notification topic when Herald creates it.", "6", ge=1, le=1024
        ),
    ] = 6
    db_pool_min_size: Annotated[
        int, _setting("Connections each process keeps open to PostgreSQL.", "1", ge=0, le=100)
    ] = 1
    db_pool_max_size: Annotated[
        int, _setting("Most connections each process opens to PostgreSQL.", "10", ge=1, le=500)
    ] = 10
    health_timeout_ms: Annotated[
        int,
        _setting("How long /health waits for each dependency, in ms.", "1000", ge=50, le=30000),
    ] = 1000
    jwt_secret: Annotated[
        Secret | None,
        _setting(
            "Key that signs access and refresh tokens, at least 32 bytes. Unset in dev: "
            "`herald dev` generates one and keeps it in HERALD_DEV_DIR.",
            "change-me-to-a-long-random-string-of-32-bytes-or-more",
        ),
    ] = None
    jwt_previous_secrets: Annotated[
        Secret | None,
        _setting(
            "Comma-separated retired signing keys, still accepted for verification during a "
            "rotation (tokens name their key by kid).",
            "an-older-secret-that-was-also-32-bytes-long-or-more",
        ),
    ] = None
    jwt_issuer: Annotated[
        str, _setting("The iss claim Herald writes and requires.", "herald", min_length=1)
    ] = "herald"
    jwt_audience: Annotated[
        str, _setting("The aud claim Herald writes and requires.", "herald-api", min_length=1)
    ] = "herald-api"
    access_token_ttl_s: Annotated[
        int, _setting("Lifetime of an access token, in seconds.", "900", ge=60, le=86400)
    ] = 900
    refresh_token_ttl_s: Annotated[
        int,
        _setting("Lifetime of a refresh token, in seconds.", "1209600", ge=300, le=31536000),
    ] = 1_209_600
    bcrypt_rounds: Annotated[
        int, _setting("bcrypt cost factor for password hashes.", "12", ge=12, le=16)
    ] = 12
    rate_limit_enabled: Annotated[
        bool, _setting("Whether requests are rate limited at all.", "true")
    ] = True
    rate_limit_fail_open: Annotated[
        bool,
        _setting(
            "When Redis cannot be reached: true lets requests through (and logs), false "
            "answers 503.",
            "true",
        ),
    ] = True
    rate_limit_anonymous: Annotated[
        str,
        _setting("Limits per client IP for callers without credentials.", "3/1s,20/10s,100/1m"),
    ] = "3/1s,20/10s,100/1m"
    rate_limit_authenticated: Annotated[
        str,
        _setting("Limits per principal for authenticated callers.", "200/1s,2000/10s,20000/1m"),
    ] = "200/1s,2000/10s,20000/1m"
    rate_limit_login: Annotated[
        str,
        _setting("Limits on login attempts, counted per account and per client IP.", "5/1m,20/1h"),
    ] = "5/1m,20/1h"
    cors_origins: Annotated[
        str,
        _setting(
            "Comma-separated origins allowed to call the API from a browser; empty: none.",
            "https://admin.example.com",
        ),
    ] = ""
    max_body_bytes: Annotated[
        int,
        _setting("Largest request body accepted, in bytes.", "16777216", ge=1024, le=268435456),
    ] = 16 * 1024 * 1024
    dev_dir: Annotated[
        str,
        _setting(
            "Where `herald dev` keeps embedded server data and logs.", ".herald", min_length=1
        ),
    ] = ".herald"

    def __post_init__(self) -> None:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise SettingsError(
                "HERALD_DB_POOL_MIN_SIZE",
                f"must not exceed HERALD_DB_POOL_MAX_SIZE ({self.db_pool_max_size})",
                str(self.db_pool_max_size),
            )
        for name in ("jwt_secret", "jwt_previous_secrets"):
            secret = getattr(self, name)
            too_short = secret is not None and any(
                len(part.strip().encode()) < MIN_SECRET_BYTES for part in secret.reveal().split(",")
            )
            if too_short:
                raise SettingsError(
                    env_name(name), f"must be at least {MIN_SECRET_BYTES} bytes", example_of(name)
                )
        for tiers_name in ("rate_limit_anonymous", "rate_limit_authenticated", "rate_limit_login"):
            try:
                parse_tiers(getattr(self, tiers_name))
            except ValueError as exc:
                raise SettingsError(
                    env_name(tiers_name), f"is invalid: {exc}", example_of(tiers_name)
                ) from None
        for name, secret, pattern in (
            ("database_url", self.database_url, _POSTGRES_URL),
            ("redis_url", self.redis_url, _REDIS_URL),
        ):
            if secret is not None and not re.match(pattern, secret.reveal()):
                raise SettingsError(
                    env_name(name), "is not a URL of the expected scheme", example_of(name)
                )

    @property
    def json_logs(self) -> bool:
        if self.log_format == "auto":
            return self.env == "production"
        return self.log_format == "json"

    @property
    def dev_path(self) -> Path:
        return Path(self.dev_dir).expanduser().resolve()

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def with_servers(self, *, database_url: str, redis_url: str, kafka_bootstrap: str) -> Settings:
        return msgspec.structs.replace(
            self,
            database_url=Secret(database_url),
            redis_url=Secret(redis_url),
            kafka_bootstrap=kafka_bootstrap,
        )

    def to_environ(self) -> dict[str, str]:
        """The HERALD_* variables that rebuild these settings in a child process."""
        out: dict[str, str] = {}
        for name in _FIELD_TYPES:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, Secret):
                out[env_name(name)] = value.reveal()
            elif isinstance(value, bool):
                out[env_name(name)] = "true" if value else "false"
            else:
                out[env_name(name)] = str(value)
        return out


class SettingsError(Exception):
    """A setting has a bad value; `str()` is the one line shown to the operator."""

    def __init__(
        self, variable: str, problem: str, example: str | None = None, *, hint: str = ""
    ) -> None:
        self.variable = variable
        hint = hint or f"example: {variable}={example}"
        super().__init__(f"{variable} {problem} ({hint})")


_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Settings, include_extras=True)
SECRET_FIELDS = frozenset(
    name
    for name, hint in _FIELD_TYPES.items()
    if Secret in typing.get_args(typing.get_args(hint)[0])
)


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def _meta(field: str) -> msgspec.Meta:
    return next(a for a in typing.get_args(_FIELD_TYPES[field]) if isinstance(a, msgspec.Meta))


def example_of(field: str) -> str:
    examples = _meta(field).examples
    return str(examples[0]) if examples else ""


def describe() -> list[tuple[str, str, str, Any]]:
    """(variable, description, example, default) for every setting, in declaration order."""
    defaults = {f.name: f.default for f in msgspec.structs.fields(Settings)}
    return [
        (env_name(name), _meta(name).description or "", example_of(name), defaults[name])
        for name in _FIELD_TYPES
    ]


def env_example() -> str:
    """The text of .env.example: every setting, its description, and its default or example."""
    lines = [
        "# Herald settings, read from the environment or from a .env file beside the command.",
        "# Every variable is optional. Each line shows the default, or an example where there",
        "# is none; copy this file to .env and uncomment what you change. The environment wins.",
    ]
    for variable, description, example, default in describe():
        if isinstance(default, bool):
            value = "true" if default else "false"
        else:
            value = example if default is None else str(default)
        lines += ["", f"# {description}", f"# {variable}={value}"]
    return "\n".join(lines) + "\n"


def _dec_hook(type_: type, value: Any) -> Any:
    if type_ is Secret and isinstance(value, str):
        return Secret(value)
    raise NotImplementedError


def _convert(field: str, raw: str) -> Any:
    variable = env_name(field)
    try:
        return msgspec.convert(raw, _FIELD_TYPES[field], strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        shown = "the given value" if field in SECRET_FIELDS else repr(raw)
        reason = str(exc).replace("`", "")
        raise SettingsError(variable, f"is invalid: {shown}: {reason}", example_of(field)) from None


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Build settings from `environ` (default: the process environment) over `env_file`.

    Raises `SettingsError` naming the first bad variable.
    """
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)

    known = {env_name(name): name for name in _FIELD_TYPES}
    converted: dict[str, Any] = {}
    for variable, raw in values.items():
        if not variable.startswith(PREFIX):
            continue
        if variable not in known:
            close = difflib.get_close_matches(variable, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "see .env.example for the full list"
            raise SettingsError(variable, "is not a Herald setting", hint=hint)
        if raw == "":
            continue  # an empty variable means "use the default", as in most tools
        field = known[variable]
        converted[field] = _convert(field, raw)
    return Settings(**converted)
