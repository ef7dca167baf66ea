"""Settings of identity and access: token signing and lifetimes, password hashing, rate limits,
CORS and request size."""

from __future__ import annotations

from typing import Annotated

from infrastructure.privacy.master import parse_master_key
from infrastructure.rate_limit import parse_tiers
from infrastructure.settings.service import ServiceSettings
from infrastructure.settings.values import (
    IpNetwork,
    Secret,
    SettingsError,
    env_name,
    example_of,
    parse_networks,
    setting,
)

MIN_SECRET_BYTES = 32
TIER_SETTINGS = (
    "rate_limit_anonymous",
    "rate_limit_authenticated",
    "rate_limit_login",
    "rate_limit_webhooks",
)


class AccessSettings(ServiceSettings, frozen=True, kw_only=True):
    jwt_secret: Annotated[
        Secret | None,
        setting(
            "Key that signs access and refresh tokens, at least 32 bytes. Unset in dev: "
            "`herald dev` generates one and keeps it in HERALD_DEV_DIR.",
            "change-me-to-a-long-random-string-of-32-bytes-or-more",
        ),
    ] = None
    jwt_previous_secrets: Annotated[
        Secret | None,
        setting(
            "Comma-separated retired signing keys, still accepted for verification during a "
            "rotation (tokens name their key by kid).",
            "an-older-secret-that-was-also-32-bytes-long-or-more",
        ),
    ] = None
    master_key: Annotated[
        Secret | None,
        setting(
            "The master key (32 bytes, base64) that wraps every data subject's key; personal "
            "data is sealed under those. Unset in dev: `herald dev` generates one and keeps it "
            "in HERALD_DEV_DIR. Keep it apart from the database's backups.",
            "q3Bv2V0xS1mYg8o7d2k5Jf4Zc6Hn9Rw0Lt1Ea3Ui8Ps",
        ),
    ] = None
    master_key_previous: Annotated[
        Secret | None,
        setting(
            "Comma-separated retired master keys, still accepted for unwrapping data keys "
            "wrapped before a rotation; new keys are wrapped by HERALD_MASTER_KEY.",
            "Zk0PqW3e7Rt9Yu2Io5Pa8Sd1Fg4Hj6Kl3Zx0Cv7Bn2M",
        ),
    ] = None
    key_cache_s: Annotated[
        int,
        setting(
            "How long a process keeps a data key it read; an erasure waits this long after "
            "destroying a key, so that no process still holds it, in s.",
            "30",
            ge=1,
            le=3600,
        ),
    ] = 30
    jwt_issuer: Annotated[
        str, setting("The iss claim Herald writes and requires.", "herald", min_length=1)
    ] = "herald"
    jwt_audience: Annotated[
        str, setting("The aud claim Herald writes and requires.", "herald-api", min_length=1)
    ] = "herald-api"
    access_token_ttl_s: Annotated[
        int, setting("Lifetime of an access token, in seconds.", "900", ge=60, le=86400)
    ] = 900
    refresh_token_ttl_s: Annotated[
        int,
        setting("Lifetime of a refresh token, in seconds.", "1209600", ge=300, le=31536000),
    ] = 1_209_600
    default_tenant: Annotated[
        str,
        setting(
            "The tenant a login that names none signs in to (the seed's login sends only"
            " email and password); other tenants are never searched.",
            "default",
            pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        ),
    ] = "default"
    bcrypt_rounds: Annotated[
        int, setting("bcrypt cost factor for password hashes.", "12", ge=12, le=16)
    ] = 12
    rate_limit_enabled: Annotated[
        bool, setting("Whether requests are rate limited at all.", "true")
    ] = True
    rate_limit_fail_open: Annotated[
        bool,
        setting(
            "When Redis cannot be reached: true lets requests through (and logs), false "
            "answers 503.",
            "true",
        ),
    ] = True
    rate_limit_anonymous: Annotated[
        str,
        setting("Limits per client IP for callers without credentials.", "3/1s,20/10s,100/1m"),
    ] = "3/1s,20/10s,100/1m"
    rate_limit_authenticated: Annotated[
        str,
        setting("Limits per principal for authenticated callers.", "200/1s,2000/10s,20000/1m"),
    ] = "200/1s,2000/10s,20000/1m"
    rate_limit_login: Annotated[
        str,
        setting("Limits on login attempts, counted per account and per client IP.", "5/1m,20/1h"),
    ] = "5/1m,20/1h"
    rate_limit_webhooks: Annotated[
        str,
        setting(
            "Limits per client IP on the provider webhooks, which carry no JWT.",
            "500/1s,20000/1m",
        ),
    ] = "500/1s,20000/1m"
    cors_origins: Annotated[
        str,
        setting(
            "Comma-separated origins allowed to call the API from a browser; empty: none.",
            "https://admin.example.com",
        ),
    ] = ""
    trusted_proxies: Annotated[
        str,
        setting(
            "Comma-separated addresses or networks of the proxies in front of the API. Only a "
            "request from one of them has its X-Forwarded-For believed; empty: none is.",
            "10.0.0.0/8,192.168.1.10",
        ),
    ] = ""
    max_body_bytes: Annotated[
        int,
        setting("Largest request body accepted, in bytes.", "16777216", ge=1024, le=268435456),
    ] = 16 * 1024 * 1024

    def check_access(self) -> None:
        for name in ("jwt_secret", "jwt_previous_secrets"):
            secret = getattr(self, name)
            too_short = secret is not None and any(
                len(part.strip().encode()) < MIN_SECRET_BYTES for part in secret.reveal().split(",")
            )
            if too_short:
                raise SettingsError(
                    env_name(name),
                    f"must be at least {MIN_SECRET_BYTES} bytes",
                    example_of(AccessSettings, name),
                )
        for name in ("master_key", "master_key_previous"):
            secret = getattr(self, name)
            for part in secret.reveal().split(",") if secret is not None else []:
                try:
                    parse_master_key(part)
                except ValueError as exc:
                    raise SettingsError(
                        env_name(name), str(exc), example_of(AccessSettings, name)
                    ) from None
        for name in TIER_SETTINGS:
            try:
                parse_tiers(getattr(self, name))
            except ValueError as exc:
                raise SettingsError(
                    env_name(name), f"is invalid: {exc}", example_of(AccessSettings, name)
                ) from None

        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise SettingsError(
                "HERALD_TRUSTED_PROXIES",
                f"is invalid: {exc}",
                example_of(AccessSettings, "trusted_proxies"),
            ) from None

    @property
    def trusted_proxy_networks(self) -> list[IpNetwork]:
        return parse_networks(self.trusted_proxies)

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


def require_master_key(settings: AccessSettings) -> None:
    if settings.master_key is None:
        raise SettingsError(
            "HERALD_MASTER_KEY",
            "is not set; personal data cannot be sealed or opened without it",
            hint="generate one with: python3 -c 'import base64,os;"
            " print(base64.urlsafe_b64encode(os.urandom(32)).decode())'",
        )


def require_signing_key(settings: AccessSettings) -> None:
    if settings.jwt_secret is None:
        raise SettingsError(
            "HERALD_JWT_SECRET",
            "is not set; the API cannot issue or check tokens without it",
            hint="generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'",
        )
