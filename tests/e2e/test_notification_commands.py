"""Notification commands over HTTP: accept, validate, deduplicate, cancel."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from domain.identity.roles import Role
from domain.notifications import notification as notifications
from infrastructure.eventstore.store import EventStore
from infrastructure.settings import Settings
from tests.e2e.conftest import Account, AccountFactory


def _email(**overrides: Any) -> dict[str, Any]:
    return {
        "channel": "email",
        "recipient": "ada@example.com",
        "subject": "Hello",
        "body": "It works.",
        **overrides,
    }


def _stored_events(stack: Settings) -> int:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url.reveal()) as conn:
        row = conn.execute("SELECT count(*) FROM stored_events").fetchone()
    assert row is not None
    return int(row[0])


def _events_of(stack: Settings, notification_id: str) -> list[str]:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url.reveal()) as conn:
        rows = conn.execute(
            "SELECT topic FROM stored_events WHERE originator_id = %s ORDER BY originator_version",
            (uuid.UUID(notification_id),),
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def sender(account: AccountFactory) -> Account:
    return account(Role.SENDER)


def test_a_notification_is_accepted_with_its_position_and_location(
    api_url: str, sender: Account, stack: Settings
) -> None:
    response = httpx.post(f"{api_url}/notifications", json=_email(), headers=sender.headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "requested"
    assert body["position"] > 0
    assert response.headers["location"] == f"/notifications/{body['id']}"
    assert _events_of(stack, body["id"]) == ["NotificationRequested@1"]


def test_a_future_send_at_schedules_it(api_url: str, sender: Account, stack: Settings) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = httpx.post(
        f"{api_url}/notifications", json=_email(send_at=later), headers=sender.headers
    )
    assert response.json()["status"] == "scheduled"
    assert _events_of(stack, response.json()["id"]) == [
        "NotificationRequested@1",
        "NotificationScheduled@1",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_email(channel="fax"), "channel"),
        (_email(recipient="not-an-address"), "recipient"),
        ({"channel": "sms", "recipient": "0123", "body": "hi"}, "recipient"),
        (_email(body="x" * 70_000), "body"),
        (_email(send_at=(datetime.now(UTC) - timedelta(hours=1)).isoformat()), "send_at"),
        (_email(priority="urgent"), "priority"),
        (_email(colour="blue"), "colour"),
    ],
    ids=["channel", "email", "phone", "body-size", "send-at-past", "priority", "unknown-field"],
)
def test_bad_input_is_422_naming_the_field_and_appends_nothing(
    api_url: str, sender: Account, stack: Settings, body: dict[str, Any], field: str
) -> None:
    before = _stored_events(stack)
    response = httpx.post(f"{api_url}/notifications", json=body, headers=sender.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["name"] for error in response.json()["errors"]]
    assert _stored_events(stack) == before


def test_the_same_key_and_body_replays_the_first_answer(
    api_url: str, sender: Account, stack: Settings
) -> None:
    headers = {**sender.headers, "Idempotency-Key": uuid.uuid4().hex}
    first = httpx.post(f"{api_url}/notifications", json=_email(), headers=headers)
    before = _stored_events(stack)
    again = httpx.post(f"{api_url}/notifications", json=_email(), headers=headers)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert _stored_events(stack) == before


def test_the_same_key_with_another_body_is_422(api_url: str, sender: Account) -> None:
    headers = {**sender.headers, "Idempotency-Key": uuid.uuid4().hex}
    httpx.post(f"{api_url}/notifications", json=_email(), headers=headers)
    other = httpx.post(f"{api_url}/notifications", json=_email(body="else"), headers=headers)
    assert other.status_code == 422
    assert other.json()["errors"][0]["name"] == "Idempotency-Key"


def test_keys_belong_to_a_tenant(api_url: str, account: AccountFactory) -> None:
    key = uuid.uuid4().hex
    one, two = account(Role.SENDER), account(Role.SENDER)
    first = httpx.post(
        f"{api_url}/notifications", json=_email(), headers={**one.headers, "Idempotency-Key": key}
    )
    second = httpx.post(
        f"{api_url}/notifications", json=_email(), headers={**two.headers, "Idempotency-Key": key}
    )
    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers


def test_concurrent_requests_with_one_key_append_once(
    api_url: str, sender: Account, stack: Settings
) -> None:
    headers = {**sender.headers, "Idempotency-Key": uuid.uuid4().hex}
    before = _stored_events(stack)

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/notifications", json=_email(), headers=headers) for _ in range(20))
            )

    responses = asyncio.run(send_all())
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum("idempotent-replayed" in r.headers for r in responses) == 19
    assert _stored_events(stack) == before + 1


def test_a_batch_is_accepted_with_ids_in_order(
    api_url: str, sender: Account, stack: Settings
) -> None:
    items = [_email(recipient=f"user{i}@example.com") for i in range(1000)]
    response = httpx.post(
        f"{api_url}/notifications/batch", json={"notifications": items}, headers=sender.headers
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 1000
    assert len(set(body["ids"])) == 1000
    assert body["last_position"] - body["first_position"] == 999
    assert _events_of(stack, body["ids"][0]) == ["NotificationRequested@1"]


def test_a_batch_with_bad_items_reports_each_and_records_none(
    api_url: str, sender: Account, stack: Settings
) -> None:
    items = [_email() for _ in range(10)]
    items[3] = _email(recipient="nope")
    items[7] = _email(channel="sms", recipient="+14155550100", body="x" * 70_000)
    before = _stored_events(stack)
    response = httpx.post(
        f"{api_url}/notifications/batch", json={"notifications": items}, headers=sender.headers
    )
    assert response.status_code == 422
    names = [e["name"] for e in response.json()["errors"]]
    assert names == ["notifications[3].recipient", "notifications[7].body"]
    malformed = [_email(), _email(channel="fax"), _email(priority=5)]
    response = httpx.post(
        f"{api_url}/notifications/batch", json={"notifications": malformed}, headers=sender.headers
    )
    assert [e["name"] for e in response.json()["errors"]] == [
        "notifications[1]",
        "notifications[2]",
    ]
    assert _stored_events(stack) == before


def test_a_batch_over_10000_is_refused(api_url: str, sender: Account) -> None:
    items = [_email()] * 10_001
    response = httpx.post(
        f"{api_url}/notifications/batch",
        json={"notifications": items},
        headers=sender.headers,
        timeout=60,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["name"] == "notifications"


def test_cancel_before_dispatch_and_refuse_after(
    api_url: str, sender: Account, account: AccountFactory, stack: Settings
) -> None:
    created = httpx.post(f"{api_url}/notifications", json=_email(), headers=sender.headers).json()
    cancel_url = f"{api_url}/notifications/{created['id']}/cancel"

    stranger = account(Role.SENDER)
    assert httpx.post(cancel_url, json={}, headers=stranger.headers).status_code == 404

    cancelled = httpx.post(cancel_url, json={"reason": "typo"}, headers=sender.headers)
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"
    assert _events_of(stack, created["id"])[-1] == "NotificationCancelled@1"
    again = httpx.post(cancel_url, json={}, headers=sender.headers)
    assert again.status_code == 202
    assert len(_events_of(stack, created["id"])) == 2


def test_cancelling_a_sent_notification_is_409(
    api_url: str, sender: Account, event_store: EventStore
) -> None:
    created = httpx.post(f"{api_url}/notifications", json=_email(), headers=sender.headers).json()
    notification_id = uuid.UUID(created["id"])
    # What a dispatcher records: an attempt started, then the provider accepted it.
    now = datetime.now(UTC)
    current = notifications.replay(
        notification_id, [r.event for r in event_store.load(notification_id)]
    )
    started = notifications.start_dispatch(current, provider="sandbox", at=now)
    current = notifications.evolve(current, started[0], notification_id)
    sent = notifications.record_sent(current, provider_message_id="m-1", at=now)
    event_store.append(notification_id, 1, [*started, *sent])

    response = httpx.post(
        f"{api_url}/notifications/{notification_id}/cancel", json={}, headers=sender.headers
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "sent" in response.json()["detail"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(None, False), ("order-7781.retry-2", True), ("not a safe id; drop table", False)],
)
def test_the_request_id_is_the_correlation_id_of_the_events(
    api_url: str, sender: Account, event_store: EventStore, sent: str | None, kept: bool
) -> None:
    """One id end to end: the one the response names (the caller's, when it has a safe shape,
    else one made for the request) is the one its events carry, single and batch alike."""
    headers = {**sender.headers, **({"X-Request-Id": sent} if sent else {})}
    one = httpx.post(f"{api_url}/notifications", json=_email(), headers=headers)
    batch = httpx.post(
        f"{api_url}/notifications/batch",
        json={"notifications": [_email(), _email(recipient="bob@example.com")]},
        headers=headers,
    )
    for response, ids in ((one, [one.json()["id"]]), (batch, batch.json()["ids"])):
        assert response.status_code == 202, response.text
        request_id = response.headers["x-request-id"]
        assert (request_id == sent) is kept
        for notification_id in ids:
            (requested, *_) = event_store.load(uuid.UUID(notification_id))
            assert requested.event.correlation_id == request_id  # type: ignore[attr-defined]
