"""SendGrid v3 Mail Send, and the Event Webhook posts that follow an accepted mail."""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from typing import Any

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from litestar import Request, Response, post

from infrastructure.simulator.state import (
    Outcome,
    Simulator,
    held,
    json_response,
)


class _Address(msgspec.Struct):
    email: str


class _Personalization(msgspec.Struct):
    to: list[_Address]
    custom_args: dict[str, str] = msgspec.field(default_factory=dict)


class _Mail(msgspec.Struct):
    personalizations: list[_Personalization]
    custom_args: dict[str, str] = msgspec.field(default_factory=dict)


def _sendgrid_error(status: int, message: str, field: str | None = None) -> Response[Any]:
    body = {"errors": [{"message": message, "field": field, "help": None}]}
    return json_response(status, body, retry=status == 429)  # noqa: PLR2004


_SENDGRID_REFUSALS = {
    Outcome.THROTTLED: (429, "too many requests", None),
    Outcome.TRANSIENT: (503, "service unavailable", None),
    Outcome.INVALID: (400, "Does not contain a valid address.", "personalizations.0.to.0.email"),
}


@post("/v3/mail/send", operation_id="sendgridMailSend")
async def sendgrid_send(request: Request[Any, Any, Any], simulator: Simulator) -> Response[Any]:
    expected = f"Bearer {simulator.sandbox.sendgrid_api_key}"
    if not hmac.compare_digest(request.headers.get("authorization", ""), expected):
        return _sendgrid_error(
            401, "The provided authorization grant is invalid, expired, or revoked"
        )
    try:
        mail = msgspec.json.decode(await request.body(), type=_Mail)
        personalization = mail.personalizations[0]
        recipient = personalization.to[0].email
    except (msgspec.DecodeError, msgspec.ValidationError, IndexError):
        return _sendgrid_error(400, "The personalizations field is required.", "personalizations")
    args = {**mail.custom_args, **personalization.custom_args}
    local_part = recipient.partition("@")[0].lower()
    refusal = Outcome.INVALID if local_part.startswith("invalid") else None
    admission = await simulator.admit(
        "sendgrid", args.get("herald_dedupe_key"), refusal, lambda: secrets.token_urlsafe(16)
    )
    if admission.outcome is Outcome.TIMEOUT:
        return held()
    if admission.outcome in _SENDGRID_REFUSALS:
        return _sendgrid_error(*_SENDGRID_REFUSALS[admission.outcome])
    if admission.outcome is Outcome.ACCEPTED:
        event = "bounce" if local_part.startswith("bounce") else "delivered"
        url = f"{simulator.settings.public_url}/webhooks/sendgrid"
        simulator.post_later(
            url,
            lambda: _sendgrid_event(event, recipient, admission.message_id, args),
            lambda body: _sendgrid_signed(simulator, body),
        )
    return Response(b"", status_code=202, headers={"X-Message-Id": admission.message_id})


def _sendgrid_event(event: str, recipient: str, message_id: str, args: dict[str, str]) -> bytes:
    """One Event Webhook batch holding one event, as of now."""
    item: dict[str, object] = {
        **args,
        "email": recipient,
        "timestamp": int(time.time()),
        "event": event,
        "sg_event_id": secrets.token_urlsafe(16),
        "sg_message_id": f"{message_id}.simulator.0",
    }
    if event == "bounce":
        item |= {
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        }
    return msgspec.json.encode([item])


def _sendgrid_signed(simulator: Simulator, body: bytes) -> dict[str, str]:
    """Headers signed as SendGrid signs: ECDSA P-256 over the timestamp and the body."""
    timestamp = str(int(time.time()))
    signature = simulator.signing_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
