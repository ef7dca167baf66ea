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

from commands.notifications import handlers
from commands.notifications.handlers import Accepted, BatchInvalidError, Plan
from commands.notifications.messages import (
    CancelNotification,
    RequestNotification,
    RetryNotification,
)
from domain.identity.roles import Role
from domain.notifications.values import Channel, Content, Priority
from infrastructure.auth.guard import allow, current_principal
from infrastructure.auth.principal import Principal
from infrastructure.eventstore.writer import Idempotency, IdempotencyKeyTakenError
from infrastructure.idempotency import MAX_KEY_LENGTH, fingerprint, recall
from infrastructure.resources import Resources

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


def _command(
    item: NotificationRequest, principal: Principal, correlation_id: str | None, key: str | None
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


def _json(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and (len(key) > MAX_KEY_LENGTH or not _KEY_SHAPE.match(key)):
        raise ValidationException(
            "invalid Idempotency-Key",
            extra=[{"key": "Idempotency-Key", "message": "must be 1-200 printable ASCII"}],
        )
    return key


async def _record_once(
    request: Request[Any, Any, Any],
    resources: Resources,
    *,
    principal: Principal,
    plan: Plan,
    render: Callable[[Sequence[Accepted]], bytes],
    canonical: Callable[[], bytes],
    key: str | None,
) -> Response[bytes]:
    """Record `plan`, or, for a key already used, answer as the first time (or refuse)."""
    writer = resources.writer
    if key is None:
        return _json(render(await handlers.record(plan, writer=writer)), ACCEPTED)
    digest = fingerprint(request.method, request.url.path, canonical())
    stored = await recall(resources.db, principal.tenant_id, key)
    if stored is None:
        remember = Idempotency(
            tenant_id=principal.tenant_id,
            key=key,
            request_hash=digest,
            status_code=ACCEPTED,
            response=lambda positions: render(plan.accepted(positions)),
        )
        try:
            accepted = await handlers.record(plan, writer=writer, idempotency=remember)
            return _json(render(accepted), ACCEPTED)
        except IdempotencyKeyTakenError:
            stored = await recall(resources.db, principal.tenant_id, key)
            if stored is None:
                raise
    if stored.request_hash != digest:
        raise ValidationException(
            "Idempotency-Key reused with a different request",
            extra=[
                {
                    "key": "Idempotency-Key",
                    "message": "was first used with a different request; use a new key",
                }
            ],
        )
    return _json(stored.body, stored.status_code, {"Idempotent-Replayed": "true"})


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
        resources: NamedDependency[Resources],
    ) -> Response[bytes]:
        principal = current_principal(request)
        key = _idempotency_key(request)
        correlation = request.headers.get("x-request-id")
        plan = handlers.plan_request(_command(data, principal, correlation, key))
        response = await _record_once(
            request,
            resources,
            principal=principal,
            plan=plan,
            render=_one,
            canonical=lambda: _encode(data),
            key=key,
        )
        replayed = "Idempotent-Replayed" in response.headers
        notification_id = (
            _accepted_decoder.decode(response.content).id if replayed else plan.appends[0].stream_id
        )
        response.headers["Location"] = f"/notifications/{notification_id}"
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
        self, request: Request[Any, Any, Any], resources: NamedDependency[Resources]
    ) -> Response[bytes]:
        principal = current_principal(request)
        key = _idempotency_key(request)
        raw = await request.body()
        items = _decode_batch(raw)
        correlation = request.headers.get("x-request-id")
        try:
            plan = handlers.plan_batch([_command(i, principal, correlation, key) for i in items])
        except BatchInvalidError as exc:
            raise ValidationException(
                "invalid batch items",
                extra=[{"key": f"notifications[{i}].{f}", "message": r} for i, f, r in exc.errors],
            ) from None
        return await _record_once(
            request,
            resources,
            principal=principal,
            plan=plan,
            render=_many,
            canonical=lambda: _encode(items),
            key=key,
        )

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
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
        data: JSONBody[CancelRequest | None] = None,
    ) -> AcceptedView:
        principal = current_principal(request)
        command = CancelNotification(
            tenant_id=principal.tenant_id,
            notification_id=notification_id,
            cancelled_by=principal.subject,
            reason=data.reason if data else None,
            correlation_id=request.headers.get("x-request-id"),
        )
        accepted = await handlers.cancel_notification(
            command, writer=resources.writer, pool=resources.db, codec=resources.codec
        )
        return _view(accepted)


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
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
    ) -> AcceptedView:
        principal = current_principal(request)
        command = RetryNotification(
            tenant_id=principal.tenant_id,
            notification_id=notification_id,
            requested_by=principal.subject,
        )
        accepted = await handlers.retry_notification(
            command, writer=resources.writer, pool=resources.db, codec=resources.codec
        )
        return _view(accepted)


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
