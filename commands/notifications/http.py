"""HTTP for notification commands: request one, request a batch, cancel; and an operator's retry.

Responses carry the event-store position, so a client can ask a read model to catch up to
its own write. An `Idempotency-Key` header makes a request safe to retry: the same key with
the same body gets the first answer again (`Idempotent-Replayed: true`); another body under
the key is refused with 422.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import FromPath, JSONBody

from commands.notifications.bodies import (
    BATCH_BODY,
    LOCATION,
    MAX_BATCH,
    REPLAYED,
    AcceptedView,
    BatchAcceptedView,
    BatchRequest,
    CancelRequest,
    IdempotencyKey,
    NotificationRequest,
)
from commands.notifications.handlers import BatchInvalidError
from commands.notifications.messages import (
    Accepted,
    CancelNotification,
    IdempotentRequest,
    Recorded,
    RequestNotification,
    RequestNotifications,
    RetryNotification,
)
from domain.identity.roles import Role
from domain.notifications.values import Content
from infrastructure.auth.guard import allow
from infrastructure.auth.principal import Principal
from infrastructure.eventstore import meta
from infrastructure.idempotency import fingerprint
from infrastructure.tracing import current_traceparent
from infrastructure.web.commands import Commands
from infrastructure.web.contract import encoded, problems
from infrastructure.web.ranges import to_utc

SENDERS = allow(Role.SENDER, Role.OPERATOR, Role.ADMIN)
OPERATORS = allow(Role.ADMIN, Role.OPERATOR)
ACCEPTED = 202
_encode = msgspec.json.Encoder().encode

_batch_decoder = msgspec.json.Decoder(BatchRequest)
_raw_items = msgspec.json.Decoder(dict[str, list[msgspec.Raw]])
_item_decoder = msgspec.json.Decoder(NotificationRequest)
_accepted_decoder = msgspec.json.Decoder(AcceptedView)


def _correlation() -> str | None:
    """The request's id, as the request middleware took it from X-Request-Id (when it has a
    safe shape) or made it: the id in the response header, in every log line of the request,
    and, through the events, in the relay's, projector's and dispatcher's."""
    bound = meta.current()
    return None if bound is None else bound.request_id


def _command(
    item: NotificationRequest,
    principal: Principal,
    correlation_id: str | None,
    key: str | None,
    traceparent: str | None = None,
) -> RequestNotification:
    return RequestNotification(
        tenant_id=principal.tenant_id,
        channel=item.channel,
        recipient=item.recipient,
        content=Content(
            subject=item.subject,
            body=item.body,
            template_id=item.template_id,
            variables=item.variables,
        ),
        priority=item.priority,
        # RFC 3339 allows offsets PostgreSQL does not store: up to 23:59.
        send_at=to_utc(item.send_at, "send_at"),
        fallback=tuple(item.fallback),
        fallback_recipients=item.fallback_recipients,
        metadata=item.metadata,
        idempotency_key=key,
        requested_by=principal.subject,
        correlation_id=correlation_id,
        traceparent=traceparent,
    )


def _one(accepted: Sequence[Accepted]) -> bytes:
    return _encode(_view(accepted[0]))


def _many(accepted: Sequence[Accepted]) -> bytes:
    return _encode(
        BatchAcceptedView(
            accepted=len(accepted),
            ids=[a.notification_id for a in accepted],
            first_position=min(a.position for a in accepted),
            last_position=max(a.position for a in accepted),
        )
    )


def _idempotent(
    request: Request[Any, Any, Any],
    caller: Principal,
    key: str | None,
    canonical: Callable[[], bytes],
) -> IdempotentRequest | None:
    """The key with the request's fingerprint, computed only when a key was sent."""
    if key is None:
        return None
    digest = fingerprint(request.method, request.url.path, canonical())
    return IdempotentRequest(tenant_id=caller.tenant_id, key=key, fingerprint=digest)


def _response(recorded: Recorded) -> Response[bytes]:
    headers = {"Idempotent-Replayed": "true"} if recorded.replayed else None
    return Response(
        recorded.body,
        status_code=recorded.status_code,
        media_type="application/json",
        headers=headers,
    )


class NotificationCommands(Controller):
    path = "/notifications"
    tags = ["notifications"]  # noqa: RUF012

    @post(
        policy=SENDERS,
        status_code=ACCEPTED,
        operation_id="requestNotification",
        summary="Request one notification; 202 once its events are committed.",
        responses={
            **encoded(ACCEPTED, AcceptedView, "Recorded: its id, and the log position to read at."),
            **problems(HTTPStatus.CONFLICT),
        },
        response_headers=[LOCATION, REPLAYED],
    )
    async def request_one(
        self,
        data: JSONBody[NotificationRequest],
        request: Request[Any, Any, Any],
        commands: NamedDependency[Commands],
        key: IdempotencyKey = None,
    ) -> Response[bytes]:
        caller = commands.caller
        idempotency = _idempotent(request, caller, key, lambda: _encode(data))
        command = _command(data, caller, _correlation(), key, current_traceparent())
        recorded = await commands.handle(
            RequestNotifications(
                requests=[command], render=_one, status_code=ACCEPTED, idempotency=idempotency
            )
        )
        response = _response(recorded)
        response.headers["Location"] = (
            f"/notifications/{_accepted_decoder.decode(recorded.body).id}"
        )
        return response

    @post(
        "/batch",
        policy=SENDERS,
        status_code=ACCEPTED,
        operation_id="requestNotificationBatch",
        summary="Request up to 10,000 notifications: all are valid and recorded, or none.",
        description='Body: `{"notifications": [<as POST /notifications>, ...]}`. Invalid '
        "items are all reported, each error named `notifications[INDEX].FIELD`.",
        responses={
            **encoded(ACCEPTED, BatchAcceptedView, "All recorded: their ids, in order."),
            **problems(
                HTTPStatus.CONFLICT,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                HTTPStatus.UNPROCESSABLE_ENTITY,
            ),
        },
        request_body=BATCH_BODY,
        response_headers=[REPLAYED],
    )
    async def request_batch(
        self,
        request: Request[Any, Any, Any],
        commands: NamedDependency[Commands],
        key: IdempotencyKey = None,
    ) -> Response[bytes]:
        caller = commands.caller
        items = _decode_batch(await request.body())
        idempotency = _idempotent(request, caller, key, lambda: _encode(items))
        correlation, traceparent = _correlation(), current_traceparent()
        command = RequestNotifications(
            requests=[_command(i, caller, correlation, key, traceparent) for i in items],
            render=_many,
            status_code=ACCEPTED,
            batch=True,
            idempotency=idempotency,
        )
        try:
            recorded = await commands.handle(command)
        except BatchInvalidError as exc:
            raise ValidationException(
                "invalid batch items",
                extra=[{"key": f"notifications[{i}].{f}", "message": r} for i, f, r in exc.errors],
            ) from None
        return _response(recorded)

    @post(
        "/{notification_id:uuid}/cancel",
        policy=SENDERS,
        status_code=ACCEPTED,
        operation_id="cancelNotification",
        summary="Cancel a notification not yet dispatched; 409 once it is on its way.",
        responses=problems(HTTPStatus.CONFLICT),
    )
    async def cancel(
        self,
        notification_id: FromPath[UUID],
        commands: NamedDependency[Commands],
        data: JSONBody[CancelRequest | None] = None,
    ) -> AcceptedView:
        caller = commands.caller
        command = CancelNotification(
            tenant_id=caller.tenant_id,
            notification_id=notification_id,
            cancelled_by=caller.subject,
            reason=data.reason if data else None,
            correlation_id=_correlation(),
        )
        return _view(await commands.handle(command))


class AdminNotificationCommands(Controller):
    path = "/admin/notifications"
    tags = ["admin"]  # noqa: RUF012

    @post(
        "/{notification_id:uuid}/retry",
        policy=OPERATORS,
        status_code=ACCEPTED,
        operation_id="retryNotification",
        summary="Re-queue a failed or dead-lettered notification; 409 in any other status.",
        responses=problems(HTTPStatus.CONFLICT),
    )
    async def retry(
        self,
        notification_id: FromPath[UUID],
        commands: NamedDependency[Commands],
    ) -> AcceptedView:
        caller = commands.caller
        command = RetryNotification(
            tenant_id=caller.tenant_id,
            notification_id=notification_id,
            requested_by=caller.subject,
        )
        return _view(await commands.handle(command))


def _view(accepted: Accepted) -> AcceptedView:
    return AcceptedView(accepted.notification_id, accepted.status.value, accepted.position)


def _decode_batch(raw: bytes) -> list[NotificationRequest]:
    """The batch's items; every malformed item is reported with its index, not just the first."""
    try:
        items = _batch_decoder.decode(raw).notifications
    except msgspec.ValidationError:
        items = None
    except msgspec.DecodeError:
        raise ValidationException(
            "malformed JSON", extra=[{"key": "body", "message": "is not valid JSON"}]
        ) from None
    if items is None:
        items = _decode_each(raw)
    if not items:
        raise ValidationException(
            "empty batch", extra=[{"key": "notifications", "message": "must not be empty"}]
        )
    if len(items) > MAX_BATCH:
        raise ValidationException(
            "batch too large",
            extra=[{"key": "notifications", "message": f"at most {MAX_BATCH} items per request"}],
        )
    return items


def _decode_each(raw: bytes) -> list[NotificationRequest]:
    try:
        wrapper = _raw_items.decode(raw)
    except msgspec.ValidationError as exc:
        raise ValidationException(
            "invalid batch", extra=[{"key": "notifications", "message": str(exc)}]
        ) from None
    if set(wrapper) != {"notifications"}:
        raise ValidationException(
            "invalid batch",
            extra=[{"key": "body", "message": "must be an object with only `notifications`"}],
        )
    items, errors = [], []
    for index, item in enumerate(wrapper["notifications"]):
        try:
            items.append(_item_decoder.decode(item))
        except msgspec.ValidationError as exc:
            errors.append({"key": f"notifications[{index}]", "message": str(exc)})
    if errors:
        raise ValidationException("invalid batch items", extra=errors)
    return items


ROUTES = [NotificationCommands, AdminNotificationCommands]

# The request bodies are also what the benchmarks in perf/ send.
__all__ = ["ROUTES", "SENDERS", "BatchRequest", "NotificationRequest"]
