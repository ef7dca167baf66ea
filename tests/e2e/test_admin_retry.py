"""POST /admin/notifications/{id}/retry over HTTP: operators re-queue what failed."""

from __future__ import annotations

import uuid

import httpx
import pytest

from domain.identity.roles import Role
from domain.notifications import notification as notifications
from infrastructure.eventstore.store import EventStore
from tests.e2e.conftest import Account, AccountFactory
from tests.e2e.streams import advance, dead_letter

EMAIL = {"channel": "email", "recipient": "ada@example.com", "subject": "s", "body": "b"}


@pytest.fixture
def operator(account: AccountFactory) -> Account:
    return account(Role.OPERATOR)


def _requested(api_url: str, account: AccountFactory, tenant: str) -> str:
    sender = account(Role.SENDER, tenant=tenant)
    response = httpx.post(f"{api_url}/notifications", json=EMAIL, headers=sender.headers)
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["id"]
    return notification_id


def _failed(api_url: str, account: AccountFactory, store: EventStore, tenant: str) -> str:
    notification_id = _requested(api_url, account, tenant)
    advance(
        store,
        notification_id,
        lambda n, at: notifications.start_dispatch(n, provider="sandbox", at=at),
        lambda n, at: notifications.record_failure(n, reason="timeout", permanent=True, at=at),
    )
    return notification_id


def _retry(api_url: str, account: Account, notification_id: str) -> httpx.Response:
    return httpx.post(
        f"{api_url}/admin/notifications/{notification_id}/retry", headers=account.headers
    )


def test_a_failed_notification_is_requeued_and_its_history_says_so(
    api_url: str, account: AccountFactory, operator: Account, event_store: EventStore
) -> None:
    notification_id = _failed(api_url, account, event_store, operator.tenant)
    response = _retry(api_url, operator, notification_id)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["id"] == notification_id
    assert body["status"] == "requested"
    assert body["position"] > 0

    history = httpx.get(
        f"{api_url}/notifications/{notification_id}/history", headers=operator.headers
    ).json()["events"]
    assert history[-1]["type"] == "RetryRequested"
    assert history[-1]["position"] == body["position"]
    assert history[-1]["data"]["requested_by"] == operator.user_id


def test_an_admin_requeues_a_dead_letter(
    api_url: str, account: AccountFactory, event_store: EventStore
) -> None:
    admin = account(Role.ADMIN)
    notification_id = _requested(api_url, account, admin.tenant)
    dead_letter(event_store, notification_id, "mailbox full")
    response = _retry(api_url, admin, notification_id)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "requested"


def test_another_tenants_or_an_unknown_notification_is_404(
    api_url: str, account: AccountFactory, operator: Account, event_store: EventStore
) -> None:
    theirs = _failed(api_url, account, event_store, f"t-{uuid.uuid4().hex[:10]}")
    for notification_id in (theirs, str(uuid.uuid4())):
        response = _retry(api_url, operator, notification_id)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert type(event_store.load(uuid.UUID(theirs))[-1].event).__name__ == "DeliveryFailed"


def test_a_notification_that_has_not_failed_is_409_naming_its_status(
    api_url: str, account: AccountFactory, operator: Account, event_store: EventStore
) -> None:
    pending = _requested(api_url, account, operator.tenant)
    response = _retry(api_url, operator, pending)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "requested" in response.json()["detail"]

    # Once re-queued it is requested again: a second retry is refused the same way.
    failed = _failed(api_url, account, event_store, operator.tenant)
    assert _retry(api_url, operator, failed).status_code == 202
    assert _retry(api_url, operator, failed).status_code == 409
    assert len(event_store.load(uuid.UUID(failed))) == 4


@pytest.mark.parametrize("role", [Role.USER, Role.SENDER, Role.AUDITOR])
def test_only_admins_and_operators_may_retry(
    api_url: str, account: AccountFactory, event_store: EventStore, role: Role
) -> None:
    caller = account(role)
    notification_id = _failed(api_url, account, event_store, caller.tenant)
    assert _retry(api_url, caller, notification_id).status_code == 403
    anonymous = httpx.post(f"{api_url}/admin/notifications/{notification_id}/retry")
    assert anonymous.status_code == 401
