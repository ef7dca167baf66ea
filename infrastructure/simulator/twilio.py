"""Twilio's Messages API, and the signed status callbacks that follow a message."""

from __future__ import annotations

import base64
import hmac
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from litestar import Request, Response, delete, get, post
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from infrastructure.providers.sandbox import SandboxCredentials
from infrastructure.simulator.state import (
    Outcome,
    Simulator,
    held,
    json_response,
)

# Twilio's magic test numbers: invalid, unsubscribed (error 21610), and undelivered later.
TWILIO_INVALID, TWILIO_UNSUBSCRIBED, TWILIO_UNDELIVERED = (
    "+15005550001",
    "+15005550004",
    "+15005550009",
)


def _twilio_error(status: int, code: int, message: str) -> Response[Any]:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return json_response(status, body, retry=status == 429)  # noqa: PLR2004


_TWILIO_REFUSALS = {
    Outcome.THROTTLED: (429, 20429, "Too Many Requests"),
    Outcome.TRANSIENT: (503, 20503, "Service Unavailable"),
    Outcome.INVALID: (400, 21211, "The 'To' number is not a valid phone number."),
    Outcome.UNSUBSCRIBED: (400, 21610, "Attempt to send to unsubscribed recipient"),
}


@post("/2010-04-01/Accounts/{sid:str}/Messages.json", operation_id="twilioMessageCreate")
async def twilio_send(
    sid: str, request: Request[Any, Any, Any], simulator: Simulator
) -> Response[Any]:
    sandbox = simulator.sandbox
    if not _authorized(request, sid, sandbox):
        return _twilio_error(401, 20003, "Authenticate")
    form = await request.form()
    to, sender, text = (str(form.get(name, "")) for name in ("To", "From", "Body"))
    callback = str(form.get("StatusCallback", ""))
    refusal = {TWILIO_INVALID: Outcome.INVALID, TWILIO_UNSUBSCRIBED: Outcome.UNSUBSCRIBED}.get(to)
    admission = await simulator.admit(
        "twilio", _twilio_key(callback), refusal, lambda: "SM" + secrets.token_hex(16)
    )
    if admission.outcome is Outcome.TIMEOUT:
        return held()
    if admission.outcome in _TWILIO_REFUSALS:
        return _twilio_error(*_TWILIO_REFUSALS[admission.outcome])
    message_id = admission.message_id
    if admission.outcome is Outcome.ACCEPTED and callback:
        fields = {"MessageSid": message_id, "To": to, "From": sender, "AccountSid": sid}
        if to == TWILIO_UNDELIVERED:
            fields |= {"MessageStatus": "undelivered", "ErrorCode": "30003"}
        else:
            fields |= {"MessageStatus": "delivered"}
        headers = _twilio_callback_headers(sandbox, callback, fields)
        simulator.post_later(callback, lambda: urlencode(fields).encode(), lambda _: headers)
    now = format_datetime(datetime.now(UTC))
    message = {
        "sid": message_id,
        "account_sid": sid,
        "api_version": "2010-04-01",
        "status": "queued",
        "to": to,
        "from": sender,
        "body": text,
        "direction": "outbound-api",
        "date_created": now,
        "date_updated": now,
        "date_sent": None,
        "num_segments": "1",
        "num_media": "0",
        "price": None,
        "price_unit": "USD",
        "error_code": None,
        "error_message": None,
        "messaging_service_sid": None,
        "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_id}.json",
        "subresource_uris": {
            "media": f"/2010-04-01/Accounts/{sid}/Messages/{message_id}/Media.json"
        },
    }
    simulator.twilio_messages[message_id] = message
    return json_response(201, message)


def _authorized(request: Request[Any, Any, Any], sid: str, sandbox: SandboxCredentials) -> bool:
    expected = (
        "Basic "
        + base64.b64encode(
            f"{sandbox.twilio_account_sid}:{sandbox.twilio_auth_token}".encode()
        ).decode()
    )
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given, expected) and sid == sandbox.twilio_account_sid


_MESSAGE_PATH = "/2010-04-01/Accounts/{sid:str}/Messages/{message_sid:str}"


@get(_MESSAGE_PATH, operation_id="twilioMessageFetch")
async def twilio_fetch(
    sid: str, message_sid: str, request: Request[Any, Any, Any], simulator: Simulator
) -> Response[Any]:
    if not _authorized(request, sid, simulator.sandbox):
        return _twilio_error(401, 20003, "Authenticate")
    message = simulator.twilio_messages.get(message_sid.removesuffix(".json"))
    if message is None:
        return _twilio_error(404, 20404, "The requested resource was not found")
    return json_response(200, message)


@delete(_MESSAGE_PATH, operation_id="twilioMessageDelete", status_code=200)
async def twilio_delete(
    sid: str, message_sid: str, request: Request[Any, Any, Any], simulator: Simulator
) -> Response[Any]:
    """Deleting a message record removes it, body and number, from the account's logs."""
    if not _authorized(request, sid, simulator.sandbox):
        return _twilio_error(401, 20003, "Authenticate")
    if simulator.twilio_messages.pop(message_sid.removesuffix(".json"), None) is None:
        return _twilio_error(404, 20404, "The requested resource was not found")
    return Response(content=None, status_code=204)


def _twilio_key(callback: str) -> str | None:
    """`notification_id:attempt` from the status callback's query, where Herald puts them."""
    query = parse_qs(urlsplit(callback).query)
    if "notification_id" not in query or "attempt" not in query:
        return None
    return f"{query['notification_id'][0]}:{query['attempt'][0]}"


def _twilio_callback_headers(
    sandbox: SandboxCredentials, url: str, fields: dict[str, str]
) -> dict[str, str]:
    """Twilio signs the callback URL and the form fields (HMAC-SHA1 with the auth token)."""
    signature = RequestValidator(sandbox.twilio_auth_token).compute_signature(url, fields)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": str(signature),
    }
