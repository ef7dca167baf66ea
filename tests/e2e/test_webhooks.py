"""Provider webhooks over HTTP: signed reports become Delivered, Opened or Bounced, once."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from domain.identity.roles import Role
from domain.notifications import notification as notifications
from domain.notifications.events import NotificationBounced, NotificationDelivered
from infrastructure.eventstore.store import EventStore
from infrastructure.providers import push_receipts
from infrastructure.providers.sandbox import SandboxCredentials, load_sandbox
from infrastructure.rate_limit import parse_tiers
from infrastructure.settings import Settings
from tests.e2e.conftest import Account, AccountFactory
from tests.e2e.streams import advance

EMAIL = {"channel": "email", "recipient": "ada@example.com", "subject": "s", "body": "b"}
SMS = {"channel": "sms", "recipient": "+14155550100", "body": "b"}


@pytest.fixture(scope="module")
def sandbox(api_settings: Settings) -> SandboxCredentials:
    """The keys the provider simulator signs with; the API verifies with the same file."""
    return load_sandbox(api_settings)


@pytest.fixture
def sender(account: AccountFactory) -> Account:
    return account(Role.SENDER)


def _requested(api_url: str, sender: Account, fields: dict[str, str]) -> str:
    response = httpx.post(f"{api_url}/notifications", json=fields, headers=sender.headers)
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["id"]
    return notification_id


def _dispatching(api_url: str, sender: Account, store: EventStore, fields: dict[str, str]) -> str:
    """A notification whose first attempt went to the provider; its Sent is not recorded yet."""
    notification_id = _requested(api_url, sender, fields)
    advance(
        store,
        notification_id,
        lambda n, at: notifications.start_dispatch(n, provider="sandbox", at=at),
    )
    return notification_id


def _sent(
    api_url: str, sender: Account, store: EventStore, message_id: str, fields: dict[str, str]
) -> str:
    notification_id = _dispatching(api_url, sender, store, fields)
    _record_sent(store, notification_id, message_id)
    return notification_id


def _record_sent(store: EventStore, notification_id: str, message_id: str) -> None:
    advance(
        store,
        notification_id,
        lambda n, at: notifications.record_sent(n, provider_message_id=message_id, at=at),
    )


def _events(store: EventStore, notification_id: str) -> list[str]:
    return [type(r.event).__name__ for r in store.load(uuid.UUID(notification_id))]


def _stored_events(settings: Settings) -> int:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.reveal()) as conn:
        row = conn.execute("SELECT count(*) FROM stored_events").fetchone()
    assert row is not None
    return int(row[0])


def _sg_event(
    notification_id: str, event: str, message_id: str, *, attempt: int = 1, **extra: Any
) -> dict[str, Any]:
    return {
        "email": "ada@example.com",
        "timestamp": int(time.time()),
        "event": event,
        "sg_event_id": uuid.uuid4().hex,
        "sg_message_id": f"{message_id}.filter0001.1.0",
        "herald_notification_id": notification_id,
        "herald_attempt": str(attempt),
        "herald_tenant": "whoever-says-so",
        "herald_dedupe_key": f"{notification_id}:{attempt}",
        **extra,
    }


def _sendgrid_headers(
    sandbox: SandboxCredentials, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    key = serialization.load_pem_private_key(sandbox.sendgrid_signing_key_pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def _sendgrid(
    api_url: str, sandbox: SandboxCredentials, events: list[dict[str, Any]]
) -> httpx.Response:
    body = json.dumps(events).encode()
    return httpx.post(
        f"{api_url}/webhooks/sendgrid", content=body, headers=_sendgrid_headers(sandbox, body)
    )


def _twilio(
    api_url: str,
    api_settings: Settings,
    sandbox: SandboxCredentials,
    notification_id: str,
    form: dict[str, str],
    *,
    attempt: int = 1,
    token: str | None = None,
) -> httpx.Response:
    """Post a status callback signed, as Twilio does, over the URL Herald gave it."""
    path = f"/webhooks/twilio?notification_id={notification_id}&attempt={attempt}"
    signature = _twilio_signature(api_settings, token or sandbox.twilio_auth_token, path, form)
    return httpx.post(f"{api_url}{path}", data=form, headers={"X-Twilio-Signature": signature})


def _twilio_signature(api_settings: Settings, token: str, path: str, form: dict[str, str]) -> str:
    signed: str = RequestValidator(token).compute_signature(
        f"{api_settings.public_url}{path}", form
    )
    return signed


def _sms_status(message_id: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": message_id,
        "MessageStatus": status,
        "To": "+14155550100",
        "From": "+15005550006",
        "AccountSid": "AC" + "0" * 32,
        **extra,
    }


def test_a_delivery_reported_twice_is_recorded_once(
    api_url: str, sender: Account, event_store: EventStore, sandbox: SandboxCredentials
) -> None:
    notification_id = _sent(api_url, sender, event_store, "m-delivered", EMAIL)
    delivered = [_sg_event(notification_id, "delivered", "m-delivered")]
    first = _sendgrid(api_url, sandbox, delivered)
    again = _sendgrid(api_url, sandbox, delivered)
    assert (first.status_code, again.status_code) == (200, 200), first.text
    assert first.json() == {"received": 1, "recorded": 1}
    assert again.json() == {"received": 1, "recorded": 0}
    assert _events(event_store, notification_id)[-1] == "NotificationDelivered"
    assert _events(event_store, notification_id).count("NotificationDelivered") == 1


def test_a_batch_is_handled_event_by_event_and_can_be_sent_again(
    api_url: str, sender: Account, event_store: EventStore, sandbox: SandboxCredentials
) -> None:
    opened_id = _sent(api_url, sender, event_store, "m-open", EMAIL)
    bounced_id = _sent(api_url, sender, event_store, "m-bounce", EMAIL)
    batch = [
        _sg_event(opened_id, "processed", "m-open"),
        _sg_event(opened_id, "delivered", "m-open"),
        _sg_event(opened_id, "open", "m-open"),
        _sg_event(bounced_id, "deferred", "m-bounce"),
        _sg_event(bounced_id, "bounce", "m-bounce", reason="550 5.1.1 mailbox unavailable"),
    ]
    response = _sendgrid(api_url, sandbox, batch)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 5, "recorded": 3}
    assert _events(event_store, opened_id)[-2:] == ["NotificationDelivered", "NotificationOpened"]
    bounced = event_store.load(uuid.UUID(bounced_id))[-1].event
    assert isinstance(bounced, NotificationBounced)
    assert bounced.reason == "sendgrid bounce: 550 5.1.1 mailbox unavailable"
    assert bounced.tenant_id == sender.tenant  # the notification's tenant, not the claimed one

    # Re-delivery, and a later drop of the bounced message: nothing more to record.
    again = _sendgrid(api_url, sandbox, [*batch, _sg_event(bounced_id, "dropped", "m-bounce")])
    assert again.json() == {"received": 6, "recorded": 0}
    assert len(_events(event_store, opened_id)) == 5
    assert len(_events(event_store, bounced_id)) == 4


def test_twilio_reports_delivery_and_failure_with_its_error_code(
    api_url: str,
    sender: Account,
    event_store: EventStore,
    sandbox: SandboxCredentials,
    api_settings: Settings,
) -> None:
    delivered_id = _sent(api_url, sender, event_store, "SM-delivered", SMS)
    failed_id = _sent(api_url, sender, event_store, "SM-failed", SMS)
    for status in ("queued", "sent", "delivered", "delivered"):
        response = _twilio(
            api_url, api_settings, sandbox, delivered_id, _sms_status("SM-delivered", status)
        )
        assert response.status_code == 200, response.text
    assert _events(event_store, delivered_id).count("NotificationDelivered") == 1

    form = _sms_status("SM-failed", "undelivered", ErrorCode="30003")
    assert _twilio(api_url, api_settings, sandbox, failed_id, form).json()["recorded"] == 1
    assert _twilio(api_url, api_settings, sandbox, failed_id, form).json()["recorded"] == 0
    bounced = event_store.load(uuid.UUID(failed_id))[-1].event
    assert isinstance(bounced, NotificationBounced)
    assert bounced.reason == "twilio undelivered: error code 30003"


def test_reports_for_unknown_notifications_are_200_and_record_nothing(
    api_url: str, sandbox: SandboxCredentials, api_settings: Settings, event_store: EventStore
) -> None:
    before = _stored_events(api_settings)
    unknown = str(uuid.uuid4())
    batch = [
        _sg_event(unknown, "delivered", "m-x"),
        _sg_event("not-a-uuid", "delivered", "m-y"),
        {"event": "open", "sg_event_id": "e-1"},  # no custom args at all
    ]
    response = _sendgrid(api_url, sandbox, batch)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 3, "recorded": 0}
    twilio = _twilio(api_url, api_settings, sandbox, unknown, _sms_status("SM-x", "delivered"))
    assert twilio.status_code == 200
    assert event_store.load(uuid.UUID(unknown)) == []
    assert _stored_events(api_settings) == before


def test_a_report_for_an_earlier_attempt_or_another_message_records_nothing(
    api_url: str, sender: Account, event_store: EventStore, sandbox: SandboxCredentials
) -> None:
    notification_id = _dispatching(api_url, sender, event_store, EMAIL)
    advance(
        event_store,
        notification_id,
        lambda n, at: notifications.record_failure(n, reason="timeout", permanent=False, at=at),
        lambda n, at: notifications.schedule_retry(n, retry_at=at, at=at),
        lambda n, at: notifications.start_dispatch(n, provider="sandbox", at=at),
        lambda n, at: notifications.record_sent(n, provider_message_id="m-second", at=at),
    )
    before = _events(event_store, notification_id)
    late = [
        _sg_event(notification_id, "bounce", "m-first", attempt=1, reason="gone"),
        _sg_event(notification_id, "delivered", "m-first", attempt=1),
        _sg_event(notification_id, "delivered", "m-other", attempt=2),
    ]
    response = _sendgrid(api_url, sandbox, late)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 3, "recorded": 0}
    assert _events(event_store, notification_id) == before


def test_a_report_ahead_of_its_sent_event_asks_for_a_retry(
    api_url: str, sender: Account, event_store: EventStore, sandbox: SandboxCredentials
) -> None:
    waiting = _dispatching(api_url, sender, event_store, EMAIL)
    other = _sent(api_url, sender, event_store, "m-other", EMAIL)
    batch = [
        _sg_event(other, "delivered", "m-other"),
        _sg_event(waiting, "delivered", "m-early"),
    ]
    response = _sendgrid(api_url, sandbox, batch)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert _events(event_store, waiting)[-1] == "DispatchStarted"

    # The provider sends the whole batch again once Sent is recorded: each recorded once.
    _record_sent(event_store, waiting, "m-early")
    again = _sendgrid(api_url, sandbox, batch)
    assert again.status_code == 200, again.text
    assert again.json() == {"received": 2, "recorded": 1}
    assert _events(event_store, other).count("NotificationDelivered") == 1
    assert _events(event_store, waiting)[-1] == "NotificationDelivered"


def test_unsigned_is_401_and_badly_signed_is_403(
    api_url: str,
    sender: Account,
    event_store: EventStore,
    sandbox: SandboxCredentials,
    api_settings: Settings,
) -> None:
    notification_id = _sent(api_url, sender, event_store, "m-forged", EMAIL)
    body = json.dumps([_sg_event(notification_id, "delivered", "m-forged")]).encode()
    url = f"{api_url}/webhooks/sendgrid"

    unsigned = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert unsigned.headers["content-type"] == "application/problem+json"

    signed = _sendgrid_headers(sandbox, body)
    tampered = httpx.post(url, content=body.replace(b"delivered", b"bounce"), headers=signed)
    assert tampered.status_code == 403
    assert tampered.headers["content-type"] == "application/problem+json"
    replayed = httpx.post(url, content=body, headers=_sendgrid_headers(sandbox, body, 1))
    assert replayed.status_code == 403
    old = _sendgrid_headers(sandbox, body, int(time.time()) - 11 * 60)
    assert httpx.post(url, content=body, headers=old).status_code == 403

    sms_id = _sent(api_url, sender, event_store, "SM-forged", SMS)
    form = _sms_status("SM-forged", "delivered")
    path = f"/webhooks/twilio?notification_id={sms_id}&attempt=1"
    assert httpx.post(f"{api_url}{path}", data=form).status_code == 401
    forged = _twilio(api_url, api_settings, sandbox, sms_id, form, token="not-the-auth-token")
    assert forged.status_code == 403
    other_attempt = httpx.post(
        f"{api_url}/webhooks/twilio?notification_id={sms_id}&attempt=2",
        data=form,
        headers={
            "X-Twilio-Signature": _twilio_signature(
                api_settings, sandbox.twilio_auth_token, path, form
            )
        },
    )
    assert other_attempt.status_code == 403

    assert _events(event_store, notification_id)[-1] == "NotificationSent"
    assert _events(event_store, sms_id)[-1] == "NotificationSent"


def test_webhooks_need_no_token_and_are_limited_per_client_ip(
    api_url: str,
    sender: Account,
    event_store: EventStore,
    sandbox: SandboxCredentials,
    api_settings: Settings,
) -> None:
    notification_id = _sent(api_url, sender, event_store, "m-no-token", EMAIL)
    body = json.dumps([_sg_event(notification_id, "delivered", "m-no-token")]).encode()
    headers = {**_sendgrid_headers(sandbox, body), "Authorization": "Bearer not-a-token"}
    response = httpx.post(f"{api_url}/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 200, response.text
    tiers = parse_tiers(api_settings.rate_limit_webhooks)
    assert response.headers["ratelimit-policy"] == ", ".join(
        f"{t.limit};w={t.window_s}" for t in tiers
    )
    assert _events(event_store, notification_id)[-1] == "NotificationDelivered"


def test_the_recorded_report_keeps_its_provider_event_id(
    api_url: str, sender: Account, event_store: EventStore, sandbox: SandboxCredentials
) -> None:
    notification_id = _sent(api_url, sender, event_store, "m-event-id", EMAIL)
    event = _sg_event(notification_id, "delivered", "m-event-id", sg_event_id="sg-123")
    started = datetime.now(UTC)
    _sendgrid(api_url, sandbox, [event])
    delivered = event_store.load(uuid.UUID(notification_id))[-1].event
    assert isinstance(delivered, NotificationDelivered)
    assert delivered.provider_event_id == "sg-123"
    assert delivered.at >= started


def test_a_push_receipt_is_its_own_credential_and_counts_once(
    api_url: str, sender: Account, event_store: EventStore, api_settings: Settings
) -> None:
    push = {"channel": "push", "recipient": "device-receipt", "subject": "s", "body": "b"}
    notification_id = _dispatching(api_url, sender, event_store, push)
    [key, *_] = push_receipts.receipt_keys(api_settings)
    token = push_receipts.sign(key, uuid.UUID(notification_id), 1)
    receipt: dict[str, Any] = {"notification_id": notification_id, "attempt": 1, "receipt": token}
    url = f"{api_url}/webhooks/push-receipts"

    early = httpx.post(url, json=receipt)
    assert early.status_code == 503
    assert early.headers["retry-after"] == "1"

    _record_sent(event_store, notification_id, "projects/p/messages/0:1")
    forged = httpx.post(url, json={**receipt, "receipt": token[:-2] + "xx"})
    assert forged.status_code == 403
    other_attempt = httpx.post(url, json={**receipt, "attempt": 2})
    assert other_attempt.status_code == 403
    not_ascii = httpx.post(url, json={**receipt, "receipt": "é" * len(token)})
    assert not_ascii.status_code == 403
    invalid = httpx.post(url, json={**receipt, "event": "arrived"})
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    assert "event" in invalid.text
    assert _events(event_store, notification_id)[-1] == "NotificationSent"

    first = httpx.post(url, json=receipt)
    again = httpx.post(url, json=receipt)
    assert (first.json(), again.json()) == (
        {"received": 1, "recorded": 1},
        {"received": 1, "recorded": 0},
    )
    opened = httpx.post(url, json={**receipt, "event": "opened"})
    assert opened.json() == {"received": 1, "recorded": 1}
    assert _events(event_store, notification_id)[-2:] == [
        "NotificationDelivered",
        "NotificationOpened",
    ]
