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

from domain.notifications.values import Priority
from infrastructure.web.rate_limit import parse_tiers

PREFIX = "HERALD_"
MIN_SECRET_BYTES = 32
PROVIDERS = ("sendgrid", "twilio", "fcm")


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
    rate_limit_webhooks: Annotated[
        str,
        _setting(
            "Limits per client IP on the provider webhooks, which carry no JWT.",
            "500/1s,20000/1m",
        ),
    ] = "500/1s,20000/1m"
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
    public_url: Annotated[
        str,
        _setting(
            "Herald's API as the providers reach it: the base of the webhook URLs given to "
            "them, and the URL Twilio signs.",
            "https://herald.example.com",
            pattern=r"^https?://[^/]+$",
        ),
    ] = "http://127.0.0.1:8000"
    sendgrid_api_key: Annotated[
        Secret | None,
        _setting(
            "SendGrid API key. Unset: email goes to the sandbox (the provider simulator).",
            "SG.xxxxxxxx",
        ),
    ] = None
    sendgrid_from: Annotated[
        str, _setting("Sender address of every email.", "notifications@example.com", min_length=3)
    ] = "notifications@example.com"
    sendgrid_webhook_public_key: Annotated[
        str | None,
        _setting(
            "The Event Webhook verification key SendGrid shows (base64 DER, ECDSA P-256).",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...",
        ),
    ] = None
    twilio_account_sid: Annotated[
        Annotated[str, msgspec.Meta(pattern=r"^AC[0-9a-f]{32}$")] | None,
        _setting(
            "Twilio account SID. Unset: SMS goes to the sandbox (the provider simulator).",
            "AC0123456789abcdef0123456789abcdef",
        ),
    ] = None
    twilio_auth_token: Annotated[
        Secret | None,
        _setting(
            "Twilio auth token: authenticates API calls and signs status callbacks.",
            "your-twilio-auth-token",
        ),
    ] = None
    twilio_from: Annotated[
        str,
        _setting(
            "Sender number of every SMS, E.164.", "+15005550006", pattern=r"^\+[1-9]\d{1,14}$"
        ),
    ] = "+15005550006"
    fcm_service_account_file: Annotated[
        str | None,
        _setting(
            "Path of a Firebase service-account JSON file. Unset: push goes to the sandbox "
            "(the provider simulator).",
            "/run/secrets/firebase.json",
        ),
    ] = None
    simulator_url: Annotated[
        str,
        _setting(
            "Where the provider simulator listens; the SDKs call it for every provider that "
            "has no credentials.",
            "http://127.0.0.1:8025",
            pattern=r"^https?://[^/]+$",
        ),
    ] = "http://127.0.0.1:8025"
    simulator_latency_ms: Annotated[
        int, _setting("Simulator: delay before each answer, in ms.", "0", ge=0, le=60000)
    ] = 0
    simulator_transient_rate: Annotated[
        float,
        _setting("Simulator: share of calls answered 503.", "0.0", ge=0.0, le=1.0),
    ] = 0.0
    simulator_throttle_rate: Annotated[
        float,
        _setting("Simulator: share of calls answered 429 with Retry-After.", "0.0", ge=0.0, le=1.0),
    ] = 0.0
    simulator_timeout_rate: Annotated[
        float,
        _setting(
            "Simulator: share of calls left unanswered until the caller times out.",
            "0.0",
            ge=0.0,
            le=1.0,
        ),
    ] = 0.0
    simulator_permanent_rate: Annotated[
        float,
        _setting(
            "Simulator: share of calls refused as an invalid recipient.", "0.0", ge=0.0, le=1.0
        ),
    ] = 0.0
    simulator_webhook_delay_ms: Annotated[
        int,
        _setting(
            "Simulator: delay between accepting a message and posting its delivery webhook, in ms.",
            "50",
            ge=0,
            le=600000,
        ),
    ] = 50
    templates_dir: Annotated[
        str | None,
        _setting(
            "Directory of notification templates, one NAME.toml each with `body` and an "
            "optional `subject`. Unset: HERALD_DEV_DIR/templates.",
            "/etc/herald/templates",
        ),
    ] = None
    dispatch_max_attempts: Annotated[
        str,
        _setting(
            "Most send attempts per channel, by priority.",
            "critical=8,high=6,normal=5,low=3",
        ),
    ] = "critical=8,high=6,normal=5,low=3"
    retry_base_ms: Annotated[
        int,
        _setting(
            "First retry delay; each later one doubles, with full jitter, in ms.",
            "1000",
            ge=1,
            le=3600000,
        ),
    ] = 1000
    retry_max_ms: Annotated[
        int, _setting("Longest retry delay, in ms.", "300000", ge=1, le=86400000)
    ] = 300_000
    provider_timeout_ms: Annotated[
        int, _setting("How long one provider call may take, in ms.", "10000", ge=100, le=120000)
    ] = 10_000
    provider_concurrency: Annotated[
        str,
        _setting(
            "Most provider calls in flight at once, per dispatcher process and provider.",
            "sendgrid=32,twilio=32,fcm=32",
        ),
    ] = "sendgrid=32,twilio=32,fcm=32"
    provider_rate_limits: Annotated[
        str,
        _setting(
            "Most provider calls per second, per provider, shared by every dispatcher.",
            "sendgrid=2000,twilio=2000,fcm=2000",
        ),
    ] = "sendgrid=2000,twilio=2000,fcm=2000"
    breaker_error_rate: Annotated[
        float,
        _setting(
            "Share of failed calls in the breaker window that opens a provider's circuit.",
            "0.5",
            gt=0.0,
            le=1.0,
        ),
    ] = 0.5
    breaker_min_calls: Annotated[
        int,
        _setting(
            "Fewest calls in the window before the error rate can open the circuit.",
            "20",
            ge=1,
            le=100000,
        ),
    ] = 20
    breaker_window_s: Annotated[
        int, _setting("Length of the breaker's error-rate window, in s.", "30", ge=1, le=3600)
    ] = 30
    breaker_open_s: Annotated[
        int,
        _setting(
            "How long an open circuit refuses calls before half-open probes, in s.",
            "15",
            ge=1,
            le=3600,
        ),
    ] = 15
    dispatch_lease_s: Annotated[
        int,
        _setting(
            "How long a dispatcher holds a notification it took; after that another may take "
            "it. Must exceed HERALD_PROVIDER_TIMEOUT_MS.",
            "60",
            ge=5,
            le=3600,
        ),
    ] = 60
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
        for tiers_name in (
            "rate_limit_anonymous",
            "rate_limit_authenticated",
            "rate_limit_login",
            "rate_limit_webhooks",
        ):
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

        for name, keys in (
            ("dispatch_max_attempts", [str(p) for p in Priority]),
            ("provider_concurrency", list(PROVIDERS)),
            ("provider_rate_limits", list(PROVIDERS)),
        ):
            try:
                parse_per_key(getattr(self, name), keys)
            except ValueError as exc:
                raise SettingsError(
                    env_name(name), f"is invalid: {exc}", example_of(name)
                ) from None
        if self.dispatch_lease_s * 1000 <= self.provider_timeout_ms:
            raise SettingsError(
                "HERALD_DISPATCH_LEASE_S",
                f"must exceed HERALD_PROVIDER_TIMEOUT_MS ({self.provider_timeout_ms} ms)",
                str(self.provider_timeout_ms // 1000 * 2 + 5),
            )
        if (self.twilio_account_sid is None) != (self.twilio_auth_token is None):
            missing = (
                "twilio_auth_token" if self.twilio_auth_token is None else "twilio_account_sid"
            )
            raise SettingsError(
                env_name(missing), "is needed with the other Twilio credential", example_of(missing)
            )

    @property
    def max_attempts(self) -> dict[Priority, int]:
        return {Priority(k): v for k, v in parse_per_key(self.dispatch_max_attempts, []).items()}

    @property
    def concurrency_per_provider(self) -> dict[str, int]:
        return parse_per_key(self.provider_concurrency, [])

    @property
    def rate_limit_per_provider(self) -> dict[str, int]:
        return parse_per_key(self.provider_rate_limits, [])

    @property
    def json_logs(self) -> bool:
        if self.log_format == "auto":
            return self.env == "production"
        return self.log_format == "json"

    @property
    def dev_path(self) -> Path:
        return Path(self.dev_dir).expanduser().resolve()

    @property
    def templates_path(self) -> Path:
        if self.templates_dir is None:
            return self.dev_path / "templates"
        return Path(self.templates_dir).expanduser().resolve()

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


def parse_per_key(raw: str, keys: list[str]) -> dict[str, int]:
    """Parse "a=1,b=2" into {"a": 1, "b": 2}; with `keys`, every one must be given, no other."""
    out: dict[str, int] = {}
    for part in raw.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"{part.strip()!r} is not name=number")
        if keys and name.strip() not in keys:
            raise ValueError(f"{name.strip()!r} is not one of {', '.join(keys)}")
        if int(value) < 1:
            raise ValueError(f"{name.strip()} must be at least 1")
        out[name.strip()] = int(value)
    missing = [k for k in keys if k not in out]
    if missing:
        raise ValueError(f"{', '.join(missing)} missing")
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
