"""Provider webhooks: SendGrid's Event Webhook, Twilio's status callbacks, push receipts.

No JWT: the provider's signature is the credential (401 without one, 403 when it does not
verify); for a push receipt, the token Herald put in the push. Each report is recorded for
the notification it names, in that notification's own tenant, at most once; a report that
is stale, already known or about an unknown notification answers 200, so the provider stops
sending it. A report that overtakes the Sent event of its attempt answers 503 with
Retry-After, so the provider sends it again once Sent is recorded.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.exceptions import (
    ClientException,
    NotAuthorizedException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.params import JSONBody, QueryParameter

from commands.webhooks import provider_reports as reports
from commands.webhooks.bodies import SENDGRID_BODY, TWILIO_BODY
from commands.webhooks.handlers import RecordProviderReport
from commands.webhooks.provider_reports import NotSentYetError, Report, UnaddressedReportError
from domain.errors import NotFoundError
from infrastructure.auth.guard import WEBHOOK
from infrastructure.eventstore.store import ConcurrencyError
from infrastructure.log import get_logger
from infrastructure.providers.webhook_signatures import (
    BadSignatureError,
    UnsignedError,
    WebhookVerifier,
)
from infrastructure.web.commands import Commands
from infrastructure.web.contract import problems

log = get_logger(__name__)

OK = 200
RETRY_AFTER = {"Retry-After": "1"}
_batch = msgspec.json.Decoder(list[msgspec.Raw])
_sendgrid_event = msgspec.json.Decoder(reports.SendGridEvent)


class Verdict(enum.Enum):
    RECORDED = "recorded"
    IGNORED = "ignored"  # not an outcome, stale, already known, or for nothing we know
    RETRY = "retry"  # the provider must send it again


@dataclass(frozen=True)
class Intake:
    """The `intake` dependency: the signatures to check, and the bus to record reports."""

    verifier: WebhookVerifier
    commands: Commands


class WebhookReceipt(msgspec.Struct, frozen=True):
    received: int  # provider events in the request
    recorded: int  # of them, how many changed a notification


# Read from the query as the signature covers it (`request.scope`); declared for the document.
_WHICH = "Set by Herald in the callback URL it gives Twilio; a report naming no notification "
_WHICH += "Herald knows is answered 200 and ignored."
# An unsigned request is a 401, a bad signature a 403; a body bigger than the API takes, 413.
_SIGNED = (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)


class ProviderWebhooks(Controller):
    path = "/webhooks"
    tags = ["webhooks"]  # noqa: RUF012

    @post(
        "/sendgrid",
        policy=WEBHOOK,
        status_code=OK,
        operation_id="receiveSendGridEvents",
        responses=problems(*_SIGNED, HTTPStatus.BAD_REQUEST),
        request_body=SENDGRID_BODY,
        summary="SendGrid Event Webhook: delivered, open, bounce and dropped events.",
        description="A JSON array of events, signed with SendGrid's ECDSA key "
        "(X-Twilio-Email-Event-Webhook-Signature and -Timestamp). 503 with Retry-After "
        "when some event must be sent again; sending the whole batch again is safe.",
    )
    async def sendgrid(
        self,
        request: Request[Any, Any, Any],
        intake: NamedDependency[Intake],
    ) -> WebhookReceipt:
        body = await request.body()
        try:
            intake.verifier.verify_sendgrid(body, request.headers)
        except (UnsignedError, BadSignatureError) as exc:
            raise _refusal(exc, "sendgrid") from None
        items = _sendgrid_items(body)
        verdicts = [await _handle(item, "sendgrid", intake.commands) for item in items]
        return _receipt(verdicts)

    @post(
        "/twilio",
        policy=WEBHOOK,
        status_code=OK,
        operation_id="receiveTwilioStatus",
        responses=problems(*_SIGNED),
        request_body=TWILIO_BODY,
        summary="Twilio status callback for one SMS: delivered, undelivered or failed.",
        description="Form-encoded, signed with X-Twilio-Signature over the URL Herald gave "
        "Twilio (`?notification_id=...&attempt=...`) and the form. 503 with Retry-After "
        "when the report overtook the message's Sent event.",
    )
    async def twilio(
        self,
        request: Request[Any, Any, Any],
        intake: NamedDependency[Intake],
        notification_id: Annotated[str | None, QueryParameter(description=_WHICH)] = None,
        attempt: Annotated[str | None, QueryParameter(description=_WHICH)] = None,
    ) -> WebhookReceipt:
        # Percent-encoded form data is ASCII; parse_qsl decodes its escapes as UTF-8.
        fields = parse_qsl((await request.body()).decode("latin-1"), keep_blank_values=True)
        query = request.scope["query_string"].decode("latin-1")
        path_and_query = request.url.path + (f"?{query}" if query else "")
        try:
            intake.verifier.verify_twilio(path_and_query, fields, request.headers)
        except (UnsignedError, BadSignatureError) as exc:
            raise _refusal(exc, "twilio") from None
        item = _twilio_item(dict(parse_qsl(query)), dict(fields))
        return _receipt([await _handle(item, "twilio", intake.commands)])

    @post(
        "/push-receipts",
        policy=WEBHOOK,
        status_code=OK,
        operation_id="receivePushReceipt",
        responses=problems(HTTPStatus.FORBIDDEN),
        summary="An app reports that a push arrived (delivered) or was opened.",
        description="JSON with the notification_id, attempt and receipt from the push's data "
        "payload (herald_notification_id, herald_attempt, herald_receipt); the receipt is the "
        "credential. 403 when it does not match; 503 with Retry-After when the push's Sent "
        "event is not recorded yet.",
    )
    async def push_receipt(
        self,
        data: JSONBody[reports.PushReceipt],
        intake: NamedDependency[Intake],
    ) -> WebhookReceipt:
        try:
            intake.verifier.verify_push_receipt(data.notification_id, data.attempt, data.receipt)
        except BadSignatureError as exc:
            raise _refusal(exc, "push") from None
        return _receipt([await _handle(reports.from_push_receipt(data), "push", intake.commands)])


def _refusal(exc: Exception, provider: str) -> NotAuthorizedException | PermissionDeniedException:
    log.info("webhook refused", provider=provider, reason=str(exc))
    if isinstance(exc, UnsignedError):
        return NotAuthorizedException(str(exc))
    return PermissionDeniedException(str(exc))


def _sendgrid_items(body: bytes) -> list[Report | UnaddressedReportError | None]:
    """Each event's report (None: not an outcome); a malformed event is logged and skipped."""
    try:
        raw_events = _batch.decode(body)
    except msgspec.DecodeError:
        raise ClientException("the body must be a JSON array of SendGrid events") from None
    items: list[Report | UnaddressedReportError | None] = []
    for index, raw in enumerate(raw_events):
        try:
            items.append(reports.from_sendgrid(_sendgrid_event.decode(raw)))
        except msgspec.DecodeError as exc:
            log.warning("malformed SendGrid event skipped", index=index, error=str(exc))
            items.append(None)
        except UnaddressedReportError as exc:
            items.append(exc)
    return items


def _twilio_item(
    query: dict[str, str], fields: dict[str, str]
) -> Report | UnaddressedReportError | None:
    try:
        return reports.from_twilio(query, fields)
    except UnaddressedReportError as exc:
        return exc


async def _handle(
    item: Report | UnaddressedReportError | None, provider: str, commands: Commands
) -> Verdict:
    if isinstance(item, Report):
        return await _record(item, provider, commands)
    if item is not None:
        log.info("webhook report names no notification", provider=provider, reason=str(item))
    return Verdict.IGNORED


async def _record(item: Report, provider: str, commands: Commands) -> Verdict:
    context = {
        "provider": provider,
        "notification_id": str(item.notification_id),
        "attempt": item.attempt,
        "outcome": item.outcome.value,
        "provider_event_id": item.provider_event_id,
        "claimed_tenant": item.claimed_tenant,
    }
    try:
        accepted = await commands.handle(RecordProviderReport(report=item))
    except NotFoundError:
        log.info("webhook report for an unknown notification", **context)
        return Verdict.IGNORED
    except NotSentYetError:
        log.info("webhook report ahead of its Sent event; the provider will retry", **context)
        return Verdict.RETRY
    except ConcurrencyError:
        log.warning(
            "webhook report kept meeting concurrent changes; the provider will retry", **context
        )
        return Verdict.RETRY
    if not accepted.recorded:
        log.info("webhook report already known or no longer current", **context)
        return Verdict.IGNORED
    log.info("webhook report recorded", status=accepted.status.value, **context)
    return Verdict.RECORDED


def _receipt(verdicts: list[Verdict]) -> WebhookReceipt:
    if Verdict.RETRY in verdicts:
        # The events recorded now are not recorded again when the provider resends them.
        raise ServiceUnavailableException(
            "a report arrived before its message was recorded as sent; send it again",
            headers=RETRY_AFTER,
        )
    return WebhookReceipt(received=len(verdicts), recorded=verdicts.count(Verdict.RECORDED))


ROUTES = [ProviderWebhooks]
