"""Google's OAuth token endpoint and FCM HTTP v1 send; the device's push receipts."""

from __future__ import annotations

import secrets
from typing import Any

import jwt
import msgspec
from litestar import Request, Response, post

from infrastructure.simulator.state import (
    Outcome,
    Simulator,
    held,
    json_response,
)

GOOGLE_ASSERTION_AUDIENCE = "https://oauth2.googleapis.com/token"  # google-auth's fixed `aud`
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@post("/token", operation_id="googleOauthToken")
async def oauth_token(request: Request[Any, Any, Any], simulator: Simulator) -> Response[Any]:
    """The JWT-bearer grant google-auth makes for a service account."""
    form = await request.form()
    if form.get("grant_type") != JWT_BEARER_GRANT:
        return json_response(400, {"error": "unsupported_grant_type"})
    try:
        jwt.decode(
            str(form.get("assertion", "")),
            simulator.token_key,
            algorithms=["RS256"],
            audience=GOOGLE_ASSERTION_AUDIENCE,
            leeway=60,
        )
    except jwt.PyJWTError:
        return json_response(
            400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        )
    token = "ya29.simulator-" + secrets.token_urlsafe(24)
    simulator.access_tokens.add(token)
    return json_response(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})


class _Push(msgspec.Struct):
    token: str = ""  # a registration token; or an installation id:
    fid: str = ""
    data: dict[str, str] = msgspec.field(default_factory=dict)


class _PushRequest(msgspec.Struct):
    message: _Push


def _fcm_error(status: int, status_name: str, error_code: str, message: str) -> Response[Any]:
    detail = {
        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": error_code,
    }
    body = {
        "error": {"code": status, "message": message, "status": status_name, "details": [detail]}
    }
    return json_response(status, body, retry=status == 429)  # noqa: PLR2004


_FCM_REFUSALS = {
    Outcome.THROTTLED: (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded."),
    Outcome.TRANSIENT: (503, "UNAVAILABLE", "UNAVAILABLE", "The service is unavailable."),
    Outcome.INVALID: (
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    ),
    Outcome.UNREGISTERED: (404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
}


@post("/v1/projects/{project:str}/messages:send", operation_id="fcmMessagesSend")
async def fcm_send(
    project: str, request: Request[Any, Any, Any], simulator: Simulator
) -> Response[Any]:
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    if token not in simulator.access_tokens:
        message = "Request had invalid authentication credentials."
        return json_response(
            401, {"error": {"code": 401, "message": message, "status": "UNAUTHENTICATED"}}
        )
    try:
        push = msgspec.json.decode(await request.body(), type=_PushRequest).message
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _fcm_error(*_FCM_REFUSALS[Outcome.INVALID])
    recipient = push.token or push.fid
    refusal = None
    if recipient.startswith("invalid"):
        refusal = Outcome.INVALID
    elif recipient.startswith("unregistered"):
        refusal = Outcome.UNREGISTERED
    admission = await simulator.admit(
        "fcm",
        push.data.get("herald_dedupe_key"),
        refusal,
        lambda: f"0:{secrets.randbelow(10**16):016d}",
    )
    if admission.outcome is Outcome.TIMEOUT:
        return held()
    if admission.outcome in _FCM_REFUSALS:
        return _fcm_error(*_FCM_REFUSALS[admission.outcome])
    receipt = push.data.get("herald_receipt")
    if admission.outcome is Outcome.ACCEPTED and receipt and not recipient.startswith("offline"):
        # The device plays its part: the app posts the push's receipt back to Herald.
        body = msgspec.json.encode(
            {
                "notification_id": push.data.get("herald_notification_id"),
                "attempt": int(push.data.get("herald_attempt", "0")),
                "receipt": receipt,
                "event": "delivered",
            }
        )
        simulator.post_later(
            f"{simulator.settings.public_url}/webhooks/push-receipts",
            lambda: body,
            lambda _: {"Content-Type": "application/json"},
        )
    return json_response(200, {"name": f"projects/{project}/messages/{admission.message_id}"})
