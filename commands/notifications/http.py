"""HTTP for notification commands: request one, request a batch, cancel; and an operator's retry.

Responses carry the event-store position, so a client can ask a read model to catch up to
its own write. An `Idempotency-Key` header makes a request safe to retry: the same key with
the same body gets the first answer again (`Idempotent-Replayed: true`); another body under
the key is refused with 422.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import FromPath, JSONBody

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
from domain.notifications.values import Channel, Content, Priority
from infrastructure.auth.guard import allow
from infrastructure.auth.principal import Principal
from infrastructure.eventstore import meta
from infrastructure.idempotency import MAX_KEY_LENGTH, fingerprint
from infrastructure.tracing import current_traceparent
from infrastructure.web.commands import Commands

SENDERS = allow(Role.SENDER, Role.OPERATOR, Role.ADMIN)
OPERATORS = allow(Role.ADMIN, Role.OPERATOR)
MAX_BATCH = 10_000
ACCEPTED = 202
_KEY_SHAPE = re.compile(r"^[\x21-\x7e]+$")
_encode = msgspec.json.Encoder().encode


class NotificationRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channel: Channel
    recipient: str
    subject: str | None = None
    body: str | None = None
    template_id: str | None = None
    variables: dict[str, str] = msgspec.field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    send_at: datetime | None = None
    fallback: list[Channel] = msgspec.field(default_factory=list)
    # The address on each fallback channel, e.g. {"sms": "+14155550100"}.
    fallback_recipients: dict[Channel, str] = msgspec.field(default_factory=dict)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class BatchRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    notifications: list[NotificationRequest]


class CancelRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: str | None = None


class AcceptedView(msgspec.Struct, frozen=True):
    id: UUID
    status: str
    position: int


class BatchAcceptedView(msgspec.Struct, frozen=True):
    accepted: int
    ids: list[UUID]
    first_position: int
    last_position: int


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
        send_at=item.send_at,
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


def _idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and (len(key) > MAX_KEY_LENGTH or not _KEY_SHAPE.match(key)):
        raise ValidationException(
            "invalid Idempotency-Key",
            extra=[{"key": "Idempotency-Key", "message": "must be 1-200 printable ASCII"}],
        )
    return key


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
    )
    async def request_one(
        self,
        data: JSONBody[NotificationRequest],
        request: Request[Any, Any, Any],
        commands: NamedDependency[Commands],
    ) -> Response[bytes]:
        caller = commands.caller
        key = _idempotency_key(request)
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
    )
    async def request_batch(
        self,
        request: Request[Any, Any, Any],
        commands: NamedDependency[Commands],
    ) -> Response[bytes]:
        caller = commands.caller
        key = _idempotency_key(request)
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
