"""The provider simulator: SendGrid, Twilio and FCM on one port, as far as the SDKs call them.

Every provider without credentials sends here (see `build_providers`). It checks the
sandbox credentials, counts calls per dedupe key, answers a repeat of an accepted key with
the same message id, fails calls at the configured rates or for magic recipients, and posts
signed delivery webhooks to HERALD_PUBLIC_URL as the real providers would. For push it also
plays the device, whose app posts each push's receipt back. Its counters live in memory, so
it runs as one process with one worker.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hmac
import logging
import random
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar import Litestar, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.di import Provide
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from infrastructure.delivery.sandbox import FILE_NAME, SandboxCredentials, load_sandbox
from infrastructure.devstack.servers import ProcessSpec, http_ok
from infrastructure.log import configure_logging, get_logger
from infrastructure.settings import PROVIDERS, Settings, SettingsError, load_settings
from infrastructure.web.problems import FieldError, problem_response

log = get_logger(__name__)

SIMULATOR_APP = "infrastructure.delivery.simulator:from_environment"
GOOGLE_ASSERTION_AUDIENCE = "https://oauth2.googleapis.com/token"  # google-auth's fixed `aud`
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TIMEOUT_MARGIN_S = 5.0  # a "timed out" call is held this long past the caller's timeout
WEBHOOK_TRIES = 20
WEBHOOK_FIRST_BACKOFF_S = 0.2
WEBHOOK_MAX_BACKOFF_S = 5.0
# Webhook posts in flight at once. httpx's pool scans its whole queue for every request it
# assigns, so thousands of queued posts would cost more CPU than the posts themselves; the
# rest wait their turn on a semaphore instead.
WEBHOOK_CONCURRENCY = 32
TWILIO_INVALID, TWILIO_UNSUBSCRIBED, TWILIO_UNDELIVERED = (
    "+15005550001",
    "+15005550004",
    "+15005550009",
)

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class SimulatorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What `PUT /_simulator/config` may change while the simulator runs."""

    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=60000)] = 0
    transient_rate: Rate = 0.0
    throttle_rate: Rate = 0.0
    timeout_rate: Rate = 0.0
    permanent_rate: Rate = 0.0
    webhook_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=600000)] = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> SimulatorConfig:
        return cls(
            latency_ms=settings.simulator_latency_ms,
            transient_rate=settings.simulator_transient_rate,
            throttle_rate=settings.simulator_throttle_rate,
            timeout_rate=settings.simulator_timeout_rate,
            permanent_rate=settings.simulator_permanent_rate,
            webhook_delay_ms=settings.simulator_webhook_delay_ms,
        )


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    REPEATED = "repeated"  # an accepted dedupe key again: the same id, nothing else happens
    TIMEOUT = "timeout"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    INVALID = "invalid"  # an invalid recipient
    UNSUBSCRIBED = "unsubscribed"
    UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class Admission:
    outcome: Outcome
    message_id: str = ""


class Simulator:
    """The simulator's state. Only the worker's event loop touches it, so no locks."""

    def __init__(self, settings: Settings, sandbox: SandboxCredentials) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.config = SimulatorConfig.from_settings(settings)
        key = serialization.load_pem_private_key(sandbox.fcm_private_key_pem.encode(), None)
        signing = serialization.load_pem_private_key(
            sandbox.sendgrid_signing_key_pem.encode(), None
        )
        if not isinstance(key, rsa.RSAPrivateKey) or not isinstance(
            signing, ec.EllipticCurvePrivateKey
        ):
            raise TypeError(f"{FILE_NAME} holds keys of the wrong kinds; delete it to renew it")
        self.token_key = key.public_key()
        self.signing_key = signing
        self.access_tokens: set[str] = set()
        self.http = httpx.AsyncClient(
            timeout=5.0, limits=httpx.Limits(max_connections=WEBHOOK_CONCURRENCY)
        )
        self._posting = asyncio.Semaphore(WEBHOOK_CONCURRENCY)
        self._webhooks: set[asyncio.Task[None]] = set()
        self.reset()

    def reset(self) -> None:
        """Forget every count and accepted key; webhooks not yet posted are dropped."""
        for task in self._webhooks:
            task.cancel()
        self.calls: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.message_ids: dict[str, str] = {}
        self.by_provider = {name: Counter(calls=0, accepted=0, failed=0) for name in PROVIDERS}
        self.webhooks = Counter(posted=0, acknowledged=0, failed=0)

    def stats(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "accepted": dict(self.accepted),
            "by_provider": {name: dict(counts) for name, counts in self.by_provider.items()},
            "webhooks": {**self.webhooks, "pending": len(self._webhooks)},
        }

    async def admit(
        self, provider: str, key: str | None, refusal: Outcome | None, new_id: Callable[[], str]
    ) -> Admission:
        """Count the call, wait the latency, then accept it, repeat an earlier answer or fail."""
        counts = self.by_provider[provider]
        counts["calls"] += 1
        if key:
            self.calls[key] += 1
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        # From here to the return nothing awaits, so two calls with one key cannot both pass.
        if key and key in self.message_ids:
            return Admission(Outcome.REPEATED, self.message_ids[key])
        outcome = refusal or self._draw()
        if outcome is not Outcome.ACCEPTED:
            counts["failed"] += 1
            log.debug("call refused", provider=provider, key=key, outcome=outcome.value)
            if outcome is Outcome.TIMEOUT:
                await asyncio.sleep(self.settings.provider_timeout_ms / 1000 + TIMEOUT_MARGIN_S)
            return Admission(outcome)
        message_id = new_id()
        counts["accepted"] += 1
        if key:
            self.accepted[key] += 1
            self.message_ids[key] = message_id
        log.debug("call accepted", provider=provider, key=key, message_id=message_id)
        return Admission(Outcome.ACCEPTED, message_id)

    def _draw(self) -> Outcome:
        roll = random.random()  # noqa: S311 - failure injection, not cryptography
        for outcome, rate in (
            (Outcome.TIMEOUT, self.config.timeout_rate),
            (Outcome.THROTTLED, self.config.throttle_rate),
            (Outcome.TRANSIENT, self.config.transient_rate),
            (Outcome.INVALID, self.config.permanent_rate),
        ):
            if roll < rate:
                return outcome
            roll -= rate
        return Outcome.ACCEPTED

    def post_later(self, url: str, build: Callable[[], tuple[bytes, dict[str, str]]]) -> None:
        """Post a webhook after the configured delay, without holding up the send's answer."""
        task = asyncio.get_running_loop().create_task(self._post(url, build))
        self._webhooks.add(task)
        task.add_done_callback(self._webhooks.discard)

    async def _post(self, url: str, build: Callable[[], tuple[bytes, dict[str, str]]]) -> None:
        await asyncio.sleep(self.config.webhook_delay_ms / 1000)
        body, headers = build()  # signed now, so a long delay leaves a fresh timestamp
        backoff = WEBHOOK_FIRST_BACKOFF_S
        for _ in range(WEBHOOK_TRIES):
            self.webhooks["posted"] += 1
            try:
                async with self._posting:
                    response = await self.http.post(url, content=body, headers=headers)
                acknowledged = response.is_success
            except httpx.HTTPError:
                acknowledged = False
            if acknowledged:
                self.webhooks["acknowledged"] += 1
                return
            self.webhooks["failed"] += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, WEBHOOK_MAX_BACKOFF_S)
        log.warning("webhook abandoned", url=url.partition("?")[0], tries=WEBHOOK_TRIES)

    async def close(self) -> None:
        for task in self._webhooks:
            task.cancel()
        await self.http.aclose()


def _json(status: int, body: object, retry: bool = False) -> Response[Any]:
    headers = {"Retry-After": "1"} if retry else None
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _held() -> Response[Any]:
    return Response(b"", status_code=504)  # nobody waits for it any more


# SendGrid v3 Mail Send


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
    return _json(status, body, retry=status == 429)  # noqa: PLR2004


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
        return _held()
    if admission.outcome in _SENDGRID_REFUSALS:
        return _sendgrid_error(*_SENDGRID_REFUSALS[admission.outcome])
    if admission.outcome is Outcome.ACCEPTED:
        event = "bounce" if local_part.startswith("bounce") else "delivered"
        url = f"{simulator.settings.public_url}/webhooks/sendgrid"
        simulator.post_later(
            url, lambda: _sendgrid_event(simulator, event, recipient, admission.message_id, args)
        )
    return Response(b"", status_code=202, headers={"X-Message-Id": admission.message_id})


def _sendgrid_event(
    simulator: Simulator, event: str, recipient: str, message_id: str, args: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    """One Event Webhook post, signed as SendGrid signs: ECDSA P-256 over timestamp + body."""
    timestamp = str(int(time.time()))
    item: dict[str, object] = {
        **args,
        "email": recipient,
        "timestamp": int(timestamp),
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
    body = msgspec.json.encode([item])
    signature = simulator.signing_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


# Twilio Messages


def _twilio_error(status: int, code: int, message: str) -> Response[Any]:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return _json(status, body, retry=status == 429)  # noqa: PLR2004


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
    expected = (
        "Basic "
        + base64.b64encode(
            f"{sandbox.twilio_account_sid}:{sandbox.twilio_auth_token}".encode()
        ).decode()
    )
    authorized = hmac.compare_digest(request.headers.get("authorization", ""), expected)
    if not authorized or sid != sandbox.twilio_account_sid:
        return _twilio_error(401, 20003, "Authenticate")
    form = await request.form()
    to, sender, text = (str(form.get(name, "")) for name in ("To", "From", "Body"))
    callback = str(form.get("StatusCallback", ""))
    refusal = {TWILIO_INVALID: Outcome.INVALID, TWILIO_UNSUBSCRIBED: Outcome.UNSUBSCRIBED}.get(to)
    admission = await simulator.admit(
        "twilio", _twilio_key(callback), refusal, lambda: "SM" + secrets.token_hex(16)
    )
    if admission.outcome is Outcome.TIMEOUT:
        return _held()
    if admission.outcome in _TWILIO_REFUSALS:
        return _twilio_error(*_TWILIO_REFUSALS[admission.outcome])
    message_id = admission.message_id
    if admission.outcome is Outcome.ACCEPTED and callback:
        fields = {"MessageSid": message_id, "To": to, "From": sender, "AccountSid": sid}
        if to == TWILIO_UNDELIVERED:
            fields |= {"MessageStatus": "undelivered", "ErrorCode": "30003"}
        else:
            fields |= {"MessageStatus": "delivered"}
        simulator.post_later(callback, lambda: _twilio_callback(sandbox, callback, fields))
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
    return _json(201, message)


def _twilio_key(callback: str) -> str | None:
    """`notification_id:attempt` from the status callback's query, where Herald puts them."""
    query = parse_qs(urlsplit(callback).query)
    if "notification_id" not in query or "attempt" not in query:
        return None
    return f"{query['notification_id'][0]}:{query['attempt'][0]}"


def _twilio_callback(
    sandbox: SandboxCredentials, url: str, fields: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    signature = RequestValidator(sandbox.twilio_auth_token).compute_signature(url, fields)
    return urlencode(fields).encode(), {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": str(signature),
    }


# Google OAuth2 and FCM HTTP v1


@post("/token", operation_id="googleOauthToken")
async def oauth_token(request: Request[Any, Any, Any], simulator: Simulator) -> Response[Any]:
    """The JWT-bearer grant google-auth makes for a service account."""
    form = await request.form()
    if form.get("grant_type") != JWT_BEARER_GRANT:
        return _json(400, {"error": "unsupported_grant_type"})
    try:
        jwt.decode(
            str(form.get("assertion", "")),
            simulator.token_key,
            algorithms=["RS256"],
            audience=GOOGLE_ASSERTION_AUDIENCE,
            leeway=60,
        )
    except jwt.PyJWTError:
        return _json(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    token = "ya29.simulator-" + secrets.token_urlsafe(24)
    simulator.access_tokens.add(token)
    return _json(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})


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
    return _json(status, body, retry=status == 429)  # noqa: PLR2004


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
        return _json(401, {"error": {"code": 401, "message": message, "status": "UNAUTHENTICATED"}})
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
        return _held()
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
            lambda: (body, {"Content-Type": "application/json"}),
        )
    return _json(200, {"name": f"projects/{project}/messages/{admission.message_id}"})


# Control


@get("/_simulator/stats", operation_id="simulatorStats")
async def stats(simulator: Simulator) -> dict[str, Any]:
    return simulator.stats()


@get("/_simulator/config", operation_id="simulatorConfig")
async def read_config(simulator: Simulator) -> SimulatorConfig:
    return simulator.config


_AT_FIELD = re.compile(r"`\$\.([A-Za-z_]+)`|unknown field `([^`]+)`")


@put("/_simulator/config", operation_id="simulatorConfigChange")
async def change_config(request: Request[Any, Any, Any], simulator: Simulator) -> Response[Any]:
    """Change some of the settings: fields left out keep their values."""
    try:
        change = msgspec.json.decode(await request.body(), type=dict[str, Any])
        current = msgspec.structs.asdict(simulator.config)
        simulator.config = msgspec.convert({**current, **change}, SimulatorConfig)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        reason = str(exc).replace("`", "")
        found = _AT_FIELD.search(str(exc))
        field = (found.group(1) or found.group(2)) if found else "body"
        return problem_response(request, 400, reason, errors=[FieldError(field, reason)])
    log.info("simulator config changed", **msgspec.structs.asdict(simulator.config))
    return _json(200, msgspec.to_builtins(simulator.config))


@post("/_simulator/reset", operation_id="simulatorReset", status_code=204)
async def reset(simulator: Simulator) -> None:
    simulator.reset()


def create_simulator_app(settings: Settings, sandbox: SandboxCredentials) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        simulator = Simulator(settings, sandbox)
        app.state.simulator = simulator
        try:
            yield
        finally:
            await simulator.close()

    def provide_simulator(state: State) -> Simulator:
        simulator: Simulator = state.simulator
        return simulator

    return Litestar(
        route_handlers=[
            sendgrid_send,
            twilio_send,
            oauth_token,
            fcm_send,
            stats,
            read_config,
            change_config,
            reset,
        ],
        lifespan=[lifespan],
        dependencies={"simulator": Provide(provide_simulator, sync_to_thread=False)},
        openapi_config=None,
        logging_config=None,  # infrastructure.log configures logging for the whole process
    )


def from_environment() -> Litestar:
    """Factory for the server's worker process: settings were validated by the parent."""
    settings = load_settings()
    configure_logging(settings, role="simulator")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per webhook post otherwise
    return create_simulator_app(settings, load_sandbox(settings))


def serve_simulator(settings: Settings) -> None:
    """Serve the simulator on HERALD_SIMULATOR_URL in the foreground until SIGINT or SIGTERM."""
    from granian import Granian  # noqa: PLC0415 - only this command needs the server
    from granian.constants import Interfaces  # noqa: PLC0415

    url = urlsplit(settings.simulator_url)
    if url.scheme != "http" or url.hostname is None:
        raise SettingsError(
            "HERALD_SIMULATOR_URL", "must be http://HOST:PORT to serve", "http://127.0.0.1:8025"
        )
    load_sandbox(settings)  # made here once, before the worker reads it
    config = SimulatorConfig.from_settings(settings)
    log.info(
        "provider simulator listening",
        url=settings.simulator_url,
        webhooks_to=settings.public_url,
        **msgspec.structs.asdict(config),
    )
    Granian(
        target=SIMULATOR_APP,
        factory=True,
        address=url.hostname,
        port=url.port or 80,
        interface=Interfaces.ASGI,
        workers=1,  # the counters live in the worker's memory
        log_enabled=False,
        workers_kill_timeout=2,  # calls held to simulate timeouts need not be waited for
    ).serve()


def simulator_spec(settings: Settings) -> ProcessSpec:
    """`herald simulate-providers` as a child process, ready once its stats answer."""
    stats_url = f"{settings.simulator_url}/_simulator/stats"
    return ProcessSpec(
        name="simulator",
        argv=[sys.executable, "-m", "infrastructure.cli", "simulate-providers"],
        url=settings.simulator_url,
        env=settings.to_environ(),
        ready=lambda: http_ok(stats_url),
    )
