"""Every route declares who may call it; roles, tenants and API keys are enforced over HTTP."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from litestar.routes import HTTPRoute

from domain.identity.roles import Role
from infrastructure.auth.guard import POLICY, Policy
from infrastructure.entrypoints.app import create_app
from infrastructure.settings import Settings
from tests.e2e.conftest import AccountFactory


def _handlers(settings: Settings) -> list[tuple[str, str, Policy | None]]:
    routes: list[tuple[str, str, Policy | None]] = []
    for route in create_app(settings).routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                routes.append((str(method), route.path, handler.opt.get(POLICY)))
    return routes


def test_every_route_declares_a_policy(stack: Settings) -> None:
    routes = _handlers(stack)
    assert len(routes) > 10
    undeclared = [(m, p) for m, p, policy in routes if not isinstance(policy, Policy)]
    assert undeclared == []


def _concrete(path: str) -> str:
    path = re.sub(r"\{[a-z_]+:uuid\}", str(uuid.uuid4()), path)
    return re.sub(r"\{[a-z_]+(:str)?\}", "user", path)


def test_each_role_is_refused_where_its_policy_does_not_admit_it(
    api_url: str, stack: Settings, account: AccountFactory
) -> None:
    tokens = {role: account(role) for role in Role}
    checked = 0
    for method, path, policy in _handlers(stack):
        assert isinstance(policy, Policy)
        if policy.roles is None:
            continue
        for role in set(Role) - policy.roles:
            response = httpx.request(
                method, f"{api_url}{_concrete(path)}", headers=tokens[role].headers, json={}
            )
            assert response.status_code == 403, (method, path, role, response.text)
            checked += 1
        # ...and with no credentials at all, every protected route asks for them.
        anonymous = httpx.request(method, f"{api_url}{_concrete(path)}", json={})
        assert anonymous.status_code == 401, (method, path)
    assert checked >= 20


def test_an_admin_sees_and_changes_only_their_own_tenant(
    api_url: str, account: AccountFactory
) -> None:
    admin_a = account(Role.ADMIN)
    member_a = account(Role.USER, tenant=admin_a.tenant)
    admin_b = account(Role.ADMIN)

    listed_b = httpx.get(f"{api_url}/admin/users", headers=admin_b.headers).json()["items"]
    assert [u["id"] for u in listed_b] == [admin_b.user_id]
    listed_a = httpx.get(f"{api_url}/admin/users", headers=admin_a.headers).json()["items"]
    assert {u["id"] for u in listed_a} == {admin_a.user_id, member_a.user_id}

    grant = httpx.post(
        f"{api_url}/admin/users/{member_a.user_id}/roles",
        json={"role": "admin"},
        headers=admin_b.headers,
    )
    assert grant.status_code == 404
    revoke = httpx.delete(
        f"{api_url}/admin/users/{admin_a.user_id}/roles/admin", headers=admin_b.headers
    )
    assert revoke.status_code == 404


def test_granting_and_revoking_roles_takes_effect(api_url: str, account: AccountFactory) -> None:
    admin = account(Role.ADMIN)
    member = account(Role.USER, tenant=admin.tenant)
    granted = httpx.post(
        f"{api_url}/admin/users/{member.user_id}/roles",
        json={"role": "auditor"},
        headers=admin.headers,
    )
    assert granted.status_code == 200
    assert granted.json()["roles"] == ["auditor", "user"]

    revoked = httpx.delete(
        f"{api_url}/admin/users/{member.user_id}/roles/user", headers=admin.headers
    )
    assert revoked.json()["roles"] == ["auditor"]
    # Tokens issued before the revocation stop working at once, not in 15 minutes.
    assert httpx.get(f"{api_url}/auth/me", headers=member.headers).status_code == 401


def test_unknown_roles_are_422(api_url: str, account: AccountFactory) -> None:
    admin = account(Role.ADMIN)
    response = httpx.post(
        f"{api_url}/admin/users/{admin.user_id}/roles",
        json={"role": "superuser"},
        headers=admin.headers,
    )
    assert response.status_code == 422
    assert "role" in response.text


def test_api_keys_are_shown_once_scoped_and_revocable(
    api_url: str, account: AccountFactory
) -> None:
    admin = account(Role.ADMIN)
    other_admin = account(Role.ADMIN)
    issued = httpx.post(
        f"{api_url}/admin/api-keys",
        json={"name": "billing", "role": "sender"},
        headers=admin.headers,
    )
    assert issued.status_code == 201
    key = issued.json()["key"]
    key_headers = {"Authorization": f"Bearer {key}"}

    me = httpx.get(f"{api_url}/auth/me", headers=key_headers).json()
    assert me["kind"] == "api_key"
    assert me["api_key"]["tenant"] == admin.tenant
    assert me["api_key"]["role"] == "sender"

    listed = httpx.get(f"{api_url}/admin/api-keys", headers=admin.headers)
    assert key not in listed.text
    assert [k["name"] for k in listed.json()["items"]] == ["billing"]
    assert httpx.get(f"{api_url}/admin/api-keys", headers=other_admin.headers).json()["items"] == []

    # A sender key may not manage keys.
    assert httpx.get(f"{api_url}/admin/api-keys", headers=key_headers).status_code == 403
    duplicate = httpx.post(
        f"{api_url}/admin/api-keys",
        json={"name": "billing", "role": "sender"},
        headers=admin.headers,
    )
    assert duplicate.status_code == 409

    key_id = issued.json()["id"]
    assert (
        httpx.delete(f"{api_url}/admin/api-keys/{key_id}", headers=other_admin.headers).status_code
        == 404
    )
    assert (
        httpx.delete(f"{api_url}/admin/api-keys/{key_id}", headers=admin.headers).status_code == 204
    )
    assert httpx.get(f"{api_url}/auth/me", headers=key_headers).status_code == 401


@pytest.mark.parametrize(
    "presented", ["hk_" + "0" * 32 + "_" + "A" * 43, "hk_garbage", "Basic dXNlcjpwYXNz"]
)
def test_unknown_or_malformed_credentials_are_401(api_url: str, presented: str) -> None:
    header = presented if presented.startswith("Basic") else f"Bearer {presented}"
    response = httpx.get(f"{api_url}/auth/me", headers={"Authorization": header})
    assert response.status_code == 401


def test_admin_user_list_pages_without_gaps_or_repeats(
    api_url: str, account: AccountFactory
) -> None:
    admin = account(Role.ADMIN)
    members = {admin.user_id} | {account(Role.USER, tenant=admin.tenant).user_id for _ in range(4)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api_url}/admin/users", params=params, headers=admin.headers).json()
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(members)
    assert len(seen) == len(set(seen))
    bad = httpx.get(f"{api_url}/admin/users", params={"cursor": "nonsense"}, headers=admin.headers)
    assert bad.status_code == 422
    assert "cursor" in bad.text


def test_a_disabled_user_is_locked_out_at_once(api_url: str, account: AccountFactory) -> None:
    admin = account(Role.ADMIN)
    member = account(Role.SENDER, tenant=admin.tenant)
    disabled = httpx.post(
        f"{api_url}/admin/users/{member.user_id}/disable",
        json={"reason": "left the company"},
        headers=admin.headers,
    )
    assert disabled.status_code == 200
    assert disabled.json()["status"] == "disabled"
    assert httpx.get(f"{api_url}/auth/me", headers=member.headers).status_code == 401
    refresh = httpx.post(f"{api_url}/auth/refresh", json={"refresh_token": member.refresh_token})
    assert refresh.status_code == 401
    relogin = httpx.post(
        f"{api_url}/auth/login",
        json={
            "tenant": member.tenant,
            "email": member.email,
            "password": "correct horse battery staple",
        },
    )
    assert relogin.status_code == 401
