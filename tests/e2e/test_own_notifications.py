"""GET /me/notifications: a user reads the notifications sent to the email they log in with."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from domain.identity.roles import Role
from tests.e2e.conftest import Account, AccountFactory


def _send(api_url: str, sender: Account, recipient: str) -> dict[str, Any]:
    response = httpx.post(
        f"{api_url}/notifications",
        json={"channel": "email", "recipient": recipient, "subject": "s", "body": "b"},
        headers=sender.headers,
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def _mine(api_url: str, who: Account | dict[str, str], **params: Any) -> httpx.Response:
    headers = who.headers if isinstance(who, Account) else who
    return httpx.get(f"{api_url}/me/notifications", params=params, headers=headers, timeout=30)


def test_a_user_pages_through_exactly_what_was_sent_to_their_email(
    api_url: str, account: AccountFactory, projector: None
) -> None:
    user = account()  # the `user` role alone
    sender = account(Role.SENDER, tenant=user.tenant)
    elsewhere = account(Role.SENDER)  # another tenant, writing to the same address
    mine = [_send(api_url, sender, user.email) for _ in range(3)]
    others = [
        _send(api_url, sender, f"{uuid.uuid4().hex[:8]}@example.com"),
        _send(api_url, elsewhere, user.email),
    ]
    newest = max(n["position"] for n in mine + others)

    first = _mine(api_url, user, limit=2, min_position=newest)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [n["id"] for n in page["items"]] == [mine[2]["id"], mine[1]["id"]]  # newest first
    assert page["next_cursor"] is not None
    second = _mine(api_url, user, limit=2, cursor=page["next_cursor"]).json()
    assert [n["id"] for n in second["items"]] == [mine[0]["id"]]
    assert second["next_cursor"] is None
    assert {n["recipient"] for n in page["items"] + second["items"]} == {user.email}

    oldest_first = _mine(api_url, user, sort="created", status="requested").json()
    assert [n["id"] for n in oldest_first["items"]] == [n["id"] for n in mine]


def test_an_api_key_has_no_address_of_its_own(api_url: str, account: AccountFactory) -> None:
    admin = account(Role.ADMIN)
    issued = httpx.post(
        f"{api_url}/admin/api-keys",
        json={"name": f"k-{uuid.uuid4().hex[:6]}", "role": "sender"},
        headers=admin.headers,
    )
    assert issued.status_code == 201, issued.text
    response = _mine(api_url, {"Authorization": f"Bearer {issued.json()['key']}"})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "address" in response.json()["detail"]


def test_without_credentials_it_is_refused(api_url: str) -> None:
    assert _mine(api_url, {}).status_code == 401
