"""Settings of the providers: credentials (or the sandbox simulator in their place), the
simulator's behaviour, and the templates directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from infrastructure.settings.access import AccessSettings
from infrastructure.settings.values import Secret, SettingsError, env_name, example_of, setting

PROVIDERS = ("sendgrid", "twilio", "fcm")


class ProviderSettings(AccessSettings, frozen=True, kw_only=True):
    public_url: Annotated[
        str,
        setting(
            "Herald's API as the providers reach it: the base of the webhook URLs given to "
            "them, and the URL Twilio signs.",
            "https://herald.example.com",
            pattern=r"^https?://[^/]+$",
        ),
    ] = "http://127.0.0.1:8000"
    sendgrid_api_key: Annotated[
        Secret | None,
        setting(
            "SendGrid API key. Unset: email goes to the sandbox (the provider simulator).",
            "SG.xxxxxxxx",
        ),
    ] = None
    sendgrid_from: Annotated[
        str, setting("Sender address of every email.", "notifications@example.com", min_length=3)
    ] = "notifications@example.com"
    sendgrid_webhook_public_key: Annotated[
        str | None,
        setting(
            "The Event Webhook verification key SendGrid shows (base64 DER, ECDSA P-256).",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...",
        ),
    ] = None
    twilio_account_sid: Annotated[
        Annotated[str, msgspec.Meta(pattern=r"^AC[0-9a-f]{32}$")] | None,
        setting(
            "Twilio account SID. Unset: SMS goes to the sandbox (the provider simulator).",
            "AC0123456789abcdef0123456789abcdef",
        ),
    ] = None
    twilio_auth_token: Annotated[
        Secret | None,
        setting(
            "Twilio auth token: authenticates API calls and signs status callbacks.",
            "your-twilio-auth-token",
        ),
    ] = None
    twilio_from: Annotated[
        str,
        setting("Sender number of every SMS, E.164.", "+15005550006", pattern=r"^\+[1-9]\d{1,14}$"),
    ] = "+15005550006"
    fcm_service_account_file: Annotated[
        str | None,
        setting(
            "Path of a Firebase service-account JSON file. Unset: push goes to the sandbox "
            "(the provider simulator).",
            "/run/secrets/firebase.json",
        ),
    ] = None
    simulator_url: Annotated[
        str,
        setting(
            "Where the provider simulator listens; the SDKs call it for every provider that "
            "has no credentials.",
            "http://127.0.0.1:8025",
            pattern=r"^https?://[^/]+$",
        ),
    ] = "http://127.0.0.1:8025"
    simulator_latency_ms: Annotated[
        int, setting("Simulator: delay before each answer, in ms.", "0", ge=0, le=60000)
    ] = 0
    simulator_transient_rate: Annotated[
        float,
        setting("Simulator: share of calls answered 503.", "0.0", ge=0.0, le=1.0),
    ] = 0.0
    simulator_throttle_rate: Annotated[
        float,
        setting("Simulator: share of calls answered 429 with Retry-After.", "0.0", ge=0.0, le=1.0),
    ] = 0.0
    simulator_timeout_rate: Annotated[
        float,
        setting(
            "Simulator: share of calls left unanswered until the caller times out.",
            "0.0",
            ge=0.0,
            le=1.0,
        ),
    ] = 0.0
    simulator_permanent_rate: Annotated[
        float,
        setting(
            "Simulator: share of calls refused as an invalid recipient.", "0.0", ge=0.0, le=1.0
        ),
    ] = 0.0
    simulator_webhook_delay_ms: Annotated[
        int,
        setting(
            "Simulator: delay between accepting a message and posting its delivery webhook, in ms.",
            "50",
            ge=0,
            le=600000,
        ),
    ] = 50
    templates_dir: Annotated[
        str | None,
        setting(
            "Directory of notification templates, one NAME.toml each with `body` and an "
            "optional `subject`. Unset: HERALD_DEV_DIR/templates.",
            "/etc/herald/templates",
        ),
    ] = None

    def check_providers(self) -> None:
        if (self.twilio_account_sid is None) != (self.twilio_auth_token is None):
            missing = (
                "twilio_auth_token" if self.twilio_auth_token is None else "twilio_account_sid"
            )
            raise SettingsError(
                env_name(missing),
                "is needed with the other Twilio credential",
                example_of(ProviderSettings, missing),
            )

    @property
    def templates_path(self) -> Path:
        if self.templates_dir is None:
            return self.dev_path / "templates"
        return Path(self.templates_dir).expanduser().resolve()
