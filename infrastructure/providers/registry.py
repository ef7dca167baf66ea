"""The choice of provider per channel: the real service where settings hold its credentials,
else the provider simulator with the sandbox credentials."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from domain.notifications.values import Channel
from infrastructure.log import get_logger
from infrastructure.providers import push_receipts
from infrastructure.providers.email_sendgrid import SendGridProvider
from infrastructure.providers.provider import Provider
from infrastructure.providers.push_fcm import FcmProvider
from infrastructure.providers.sandbox import FCM_PROJECT, load_sandbox
from infrastructure.providers.sms_twilio import TwilioProvider
from infrastructure.settings import Settings, SettingsError

log = get_logger(__name__)


def build_providers(settings: Settings) -> dict[Channel, Provider]:
    """A provider per channel: the real service where settings hold its credentials, else the
    provider simulator with the sandbox credentials (and a warning saying so)."""
    simulator = settings.simulator_url
    timeout_ms = settings.provider_timeout_ms
    if settings.sendgrid_api_key is not None:
        email = SendGridProvider(
            api_key=settings.sendgrid_api_key.reveal(),
            sender=settings.sendgrid_from,
            timeout_ms=timeout_ms,
        )
    else:
        email = SendGridProvider(
            api_key=load_sandbox(settings).sendgrid_api_key,
            sender=settings.sendgrid_from,
            timeout_ms=timeout_ms,
            base_url=simulator,
        )
    sms = _twilio(settings)
    receipt_key = next(iter(push_receipts.receipt_keys(settings)), None)
    if receipt_key is None:
        log.warning("push receipts off: without HERALD_JWT_SECRET a push ends at sent")
    if settings.fcm_service_account_file is not None:
        push = FcmProvider(
            service_account=_service_account(settings.fcm_service_account_file),
            timeout_ms=timeout_ms,
            receipt_key=receipt_key,
        )
    else:
        push = FcmProvider(
            service_account=load_sandbox(settings).fcm_service_account(simulator),
            timeout_ms=timeout_ms,
            receipt_key=receipt_key,
            send_url=f"{simulator}/v1/projects/{FCM_PROJECT}/messages:send",
        )
    providers: list[Provider] = [email, sms, push]
    for provider in providers:
        if provider.sandbox:
            log.warning(
                "provider in sandbox: its messages go to the provider simulator",
                provider=provider.name,
                url=simulator,
            )
    return {provider.channel: provider for provider in providers}


def _twilio(settings: Settings) -> TwilioProvider:
    if settings.twilio_account_sid is not None and settings.twilio_auth_token is not None:
        return TwilioProvider(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.reveal(),
            sender=settings.twilio_from,
            public_url=settings.public_url,
            timeout_ms=settings.provider_timeout_ms,
        )
    sandbox = load_sandbox(settings)
    return TwilioProvider(
        account_sid=sandbox.twilio_account_sid,
        auth_token=sandbox.twilio_auth_token,
        sender=settings.twilio_from,
        public_url=settings.public_url,
        timeout_ms=settings.provider_timeout_ms,
        base_url=settings.simulator_url,
    )


def message_deleters(settings: Settings) -> dict[str, Callable[[str], bool]]:
    """By provider name, what deletes the provider's copy of a sent message, for those whose
    API allows it: Twilio's message records. SendGrid and FCM offer no such call."""
    return {"twilio": _twilio(settings).delete_message}


def _service_account(path: str) -> dict[str, Any]:
    try:
        account = json.loads(Path(path).expanduser().read_text())
    except (OSError, ValueError):
        account = None
    if not isinstance(account, dict) or "private_key" not in account:
        raise SettingsError(
            "HERALD_FCM_SERVICE_ACCOUNT_FILE",
            f"{path} is not a readable Firebase service-account JSON file",
            "/run/secrets/firebase.json",
        )
    return account
