"""Checks that a webhook really comes from SendGrid or Twilio, with their SDKs' verifiers,
or that a push receipt is one Herald handed out.

Keys follow the providers' mode: an unconfigured provider is the sandbox, whose simulator
signs with the sandbox credentials; a configured one signs with the keys in settings.
SendGrid signs its timestamp and the raw body (ECDSA P-256); Twilio signs the URL it
called and the form fields (HMAC with the auth token), so the URL is rebuilt from
`public_url`, the address the providers were given, not from whatever Host reached us.
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from litestar.datastructures import MultiDict
from sendgrid.helpers.eventwebhook import EventWebhook  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from infrastructure.log import get_logger
from infrastructure.providers import push_receipts
from infrastructure.providers.sandbox import load_sandbox
from infrastructure.settings import Settings

log = get_logger(__name__)

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
TWILIO_SIGNATURE = "X-Twilio-Signature"
# A signed SendGrid body stays valid forever; past this age it is treated as a replay.
SENDGRID_MAX_AGE_S = 600


class UnsignedError(Exception):
    """The request carries no signature (or no timestamp to go with it)."""


class BadSignatureError(Exception):
    """The signature does not verify, is stale, or cannot be checked at all."""


@dataclass(frozen=True)
class WebhookVerifier:
    sendgrid: EventWebhook | None  # None: SendGrid is real and has no key; refuse everything
    twilio: RequestValidator
    public_url: str
    push_receipt_keys: list[bytes]

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookVerifier:
        sendgrid_key = settings.sendgrid_webhook_public_key
        if settings.sendgrid_api_key is None:
            sendgrid_key = load_sandbox(settings).sendgrid_verification_key
        configured = settings.twilio_auth_token
        token = configured.reveal() if configured else load_sandbox(settings).twilio_auth_token
        return cls(
            sendgrid=_sendgrid_verifier(sendgrid_key),
            twilio=RequestValidator(token),
            public_url=settings.public_url.rstrip("/"),
            push_receipt_keys=push_receipts.receipt_keys(settings),
        )

    def verify_sendgrid(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        now: float | None = None,
    ) -> None:
        """Raise UnsignedError or BadSignatureError unless SendGrid signed `body` lately."""
        signature = headers.get(SENDGRID_SIGNATURE)
        timestamp = headers.get(SENDGRID_TIMESTAMP)
        if not signature or not timestamp:
            raise UnsignedError("SendGrid signature or timestamp header missing")
        if self.sendgrid is None:
            log.warning("SendGrid webhook refused: no usable HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY")
            raise BadSignatureError("no SendGrid verification key is configured")
        try:
            age = (time.time() if now is None else now) - int(timestamp)
        except ValueError:
            raise BadSignatureError("the timestamp is not a number") from None
        if abs(age) > SENDGRID_MAX_AGE_S:
            raise BadSignatureError("the timestamp is more than 10 minutes away")
        try:
            valid = self.sendgrid.verify_signature(body.decode(), signature, timestamp)
        except (UnicodeDecodeError, binascii.Error, ValueError):
            valid = False
        if not valid:
            raise BadSignatureError("the SendGrid signature does not verify")

    def verify_twilio(
        self,
        path_and_query: str,
        fields: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
    ) -> None:
        """Raise UnsignedError or BadSignatureError unless Twilio signed this URL and form."""
        signature = headers.get(TWILIO_SIGNATURE)
        if not signature:
            raise UnsignedError("X-Twilio-Signature header missing")
        url = self.public_url + path_and_query
        if not self.twilio.validate(url, MultiDict(fields), signature):
            raise BadSignatureError("the Twilio signature does not verify")

    def verify_push_receipt(self, notification_id: UUID, attempt: int, receipt: str) -> None:
        """Raise BadSignatureError unless Herald signed this receipt for this attempt."""
        if not push_receipts.verify(self.push_receipt_keys, notification_id, attempt, receipt):
            raise BadSignatureError("the push receipt does not match its notification")


def _sendgrid_verifier(key: str | None) -> EventWebhook | None:
    if key is None:
        log.warning("SendGrid is configured without a webhook key: its webhooks will be refused")
        return None
    try:
        return EventWebhook(key.strip())
    except ValueError:
        log.exception("HERALD_SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER public key")
        return None
