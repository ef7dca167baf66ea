"""The audit trail over HTTP: every action an admin or operator can take leaves exactly one
entry naming who, from where and with what user agent; logins are audited whoever tries;
the audit log can be queried and verified, and nothing can edit it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from litestar.routes import HTTPRoute

from domain.identity.roles import Role
from infrastructure.auth.guard import POLICY, Policy
from infrastructure.entrypoints.app import create_app
from infrastructure.eventstore.store import EventStore
from infrastructure.settings import Settings
from tests.e2e.conftest import PASSWORD, Account, AccountFactory, login
from tests.e2e.streams import dead_letter
from tests.kafka_helpers import eventually

AGENT = "audit-walk/1.0"


def _audited_routes(settings: Settings) -> set[tuple[str, str]]:
    """Every non-GET route an admin or operator may call: those admitting either role, and
    those open to anyone that read credentials when they are sent."""
    found = set()
    for route in create_app(settings).routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            policy = handler.opt.get(POLICY)
            if handler.http_methods == {"OPTIONS"}:
                continue  # litestar's own answers to OPTIONS
            assert isinstance(policy, Policy)
            admits = policy.roles is None or not policy.roles.isdisjoint(
                {Role.ADMIN, Role.OPERATOR}
            )
            if not admits or not policy.credentials or not policy.rate_limited:
                continue  # provider webhooks sign their calls; probes change nothing
            for method in handler.http_methods - {"GET", "HEAD", "OPTIONS"}:
                found.add((str(method), route.path_format))
    return found


@dataclass
class Walk:
    api_url: str
    admin: Account
    make: AccountFactory
    store: EventStore

    def call(
        self, method: str, path: str, *, as_: Account | None = None, **kwargs: Any
    ) -> tuple[httpx.Response, str]:
        request_id = f"walk-{uuid.uuid4().hex}"
        who = self.admin if as_ is None else as_
        headers = {**who.headers, "User-Agent": AGENT, "X-Request-ID": request_id}
        headers.update(kwargs.pop("headers", {}))
        response = httpx.request(method, f"{self.api_url}{path}", headers=headers, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response, request_id

    def user(self) -> Account:
        return self.make(Role.USER, tenant=self.admin.tenant)

    def notification(self) -> str:
        body = {"channel": "email", "recipient": "ada@example.com", "subject": "s", "body": "b"}
        response, _ = self.call("POST", "/notifications", json=body)
        return str(response.json()["id"])


Example = Callable[[Walk], tuple[str, str]]  # runs the call; returns (request id, actor)
EMAIL = {"channel": "email", "recipient": "ada@example.com", "subject": "s", "body": "b"}


def _register(w: Walk) -> tuple[str, str]:
    body = {"tenant": w.admin.tenant, "email": f"{uuid.uuid4().hex[:8]}@x.io", "password": PASSWORD}
    return w.call("POST", "/auth/register", json=body)[1], w.admin.user_id


def _login(w: Walk) -> tuple[str, str]:
    body = {"tenant": w.admin.tenant, "email": w.admin.email, "password": PASSWORD}
    return w.call("POST", "/auth/login", json=body)[1], w.admin.user_id


def _refresh(w: Walk) -> tuple[str, str]:
    fresh = login(w.api_url, w.admin.tenant, w.admin.email).json()
    body = {"refresh_token": fresh["refresh_token"]}
    return w.call("POST", "/auth/refresh", json=body)[1], w.admin.user_id


def _logout(w: Walk) -> tuple[str, str]:
    fresh = login(w.api_url, w.admin.tenant, w.admin.email).json()
    bearer = {"Authorization": f"Bearer {fresh['access_token']}"}
    return w.call("POST", "/auth/logout", headers=bearer)[1], w.admin.user_id


def _password(w: Walk) -> tuple[str, str]:
    other = w.make(Role.ADMIN, tenant=w.admin.tenant)  # its tokens stop working afterwards
    body = {"current_password": PASSWORD, "new_password": PASSWORD + "!"}
    return w.call("POST", "/auth/password", as_=other, json=body)[1], other.user_id


def _grant(w: Walk) -> tuple[str, str]:
    path = f"/admin/users/{w.user().user_id}/roles"
    return w.call("POST", path, json={"role": "auditor"})[1], w.admin.user_id


def _revoke_role(w: Walk) -> tuple[str, str]:
    return w.call("DELETE", f"/admin/users/{w.user().user_id}/roles/user")[1], w.admin.user_id


def _disable(w: Walk) -> tuple[str, str]:
    path = f"/admin/users/{w.user().user_id}/disable"
    return w.call("POST", path, json={"reason": "left"})[1], w.admin.user_id


def _issue_key(w: Walk) -> tuple[str, str]:
    body = {"name": f"k-{uuid.uuid4().hex[:6]}", "role": "sender"}
    return w.call("POST", "/admin/api-keys", json=body)[1], w.admin.user_id


def _revoke_key(w: Walk) -> tuple[str, str]:
    body = {"name": f"k-{uuid.uuid4().hex[:6]}", "role": "sender"}
    key_id = w.call("POST", "/admin/api-keys", json=body)[0].json()["id"]
    return w.call("DELETE", f"/admin/api-keys/{key_id}")[1], w.admin.user_id


def _request(w: Walk) -> tuple[str, str]:
    return w.call("POST", "/notifications", json=EMAIL)[1], w.admin.user_id


def _batch(w: Walk) -> tuple[str, str]:
    body = {"notifications": [EMAIL] * 25}
    return w.call("POST", "/notifications/batch", json=body)[1], w.admin.user_id


def _cancel(w: Walk) -> tuple[str, str]:
    path = f"/notifications/{w.notification()}/cancel"
    return w.call("POST", path, json={"reason": "walk"})[1], w.admin.user_id


def _retry(w: Walk) -> tuple[str, str]:
    notification_id = w.notification()
    dead_letter(w.store, notification_id, "walk")
    return w.call("POST", f"/admin/notifications/{notification_id}/retry")[1], w.admin.user_id


def _run_job(w: Walk) -> tuple[str, str]:
    return w.call("POST", "/admin/jobs/cleanup/run")[1], w.admin.user_id


def _request_export(w: Walk) -> tuple[str, str]:
    body = {"kind": "notifications", "format": "csv"}
    return w.call("POST", "/data-pipeline/exports", json=body)[1], w.admin.user_id


def _set_retention(w: Walk) -> tuple[str, str]:
    body = {"notifications_days": 60, "events_days": 400}
    return w.call("PUT", "/data-pipeline/retention", json=body)[1], w.admin.user_id


def _run_archival(w: Walk) -> tuple[str, str]:
    return w.call("POST", "/data-pipeline/archive")[1], w.admin.user_id


def _erase(w: Walk) -> tuple[str, str]:
    body = {"recipient": f"gone-{uuid.uuid4().hex[:6]}@example.com"}
    return w.call("POST", "/data-pipeline/erasures", json=body)[1], w.admin.user_id


def _anonymize(w: Walk) -> tuple[str, str]:
    return w.call("DELETE", f"/data-pipeline/anonymize/{uuid.uuid4()}")[1], w.admin.user_id


EXAMPLES: dict[tuple[str, str], Example] = {
    ("POST", "/auth/register"): _register,
    ("POST", "/auth/login"): _login,
    ("POST", "/auth/refresh"): _refresh,
    ("POST", "/auth/logout"): _logout,
    ("POST", "/auth/password"): _password,
    ("POST", "/admin/users/{user_id}/roles"): _grant,
    ("DELETE", "/admin/users/{user_id}/roles/{role}"): _revoke_role,
    ("POST", "/admin/users/{user_id}/disable"): _disable,
    ("POST", "/admin/api-keys"): _issue_key,
    ("DELETE", "/admin/api-keys/{key_id}"): _revoke_key,
    ("POST", "/notifications"): _request,
    ("POST", "/notifications/batch"): _batch,
    ("POST", "/notifications/{notification_id}/cancel"): _cancel,
    ("POST", "/admin/notifications/{notification_id}/retry"): _retry,
    ("POST", "/admin/jobs/{name}/run"): _run_job,
    ("POST", "/data-pipeline/exports"): _request_export,
    ("PUT", "/data-pipeline/retention"): _set_retention,
    ("POST", "/data-pipeline/archive"): _run_archival,
    ("POST", "/data-pipeline/erasures"): _erase,
    ("DELETE", "/data-pipeline/anonymize/{subject}"): _anonymize,
}


def _entries(settings: Settings, request_id: str) -> list[dict[str, Any]]:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.reveal()) as conn:
        cursor = conn.execute(
            "SELECT action, actor, ip, user_agent, count, tenant_id FROM audit_log"
            " WHERE request_id = %s",
            (request_id,),
        )
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_every_action_an_admin_or_operator_can_take_leaves_exactly_one_entry(
    api_url: str, account: AccountFactory, event_store: EventStore, projector: None, stack: Settings
) -> None:
    routes = _audited_routes(stack)
    assert set(EXAMPLES) == routes, "a route to audit has no example here, or one went away"
    walk = Walk(api_url, account(Role.ADMIN), account, event_store)
    done = {route: example(walk) for route, example in EXAMPLES.items()}
    for route, (request_id, actor) in done.items():

        def written(request_id: str = request_id) -> bool:
            return bool(_entries(stack, request_id))

        eventually(written, 30, f"an entry for {route}")
        entries = _entries(stack, request_id)
        assert len(entries) == 1, (route, entries)
        (entry,) = entries
        assert (entry["actor"], entry["ip"], entry["user_agent"]) == (actor, "127.0.0.1", AGENT)
    batch_request, _ = done[("POST", "/notifications/batch")]
    assert _entries(stack, batch_request)[0]["count"] == 25


def test_a_failed_login_is_audited_with_the_address_and_agent_tried_from(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    admin = account(Role.ADMIN)
    request_id = f"bad-{uuid.uuid4().hex}"
    response = httpx.post(
        f"{api_url}/auth/login",
        json={"tenant": admin.tenant, "email": admin.email, "password": "not it at all"},
        headers={"User-Agent": "guesser/0.1", "X-Request-ID": request_id},
    )
    assert response.status_code == 401
    assert "password" in response.json()["detail"]  # says it failed, never why
    eventually(lambda: bool(_entries(stack, request_id)), 30, "the failed login's entry")
    (entry,) = _entries(stack, request_id)
    assert entry["action"] == "login.failed"
    assert (entry["actor"], entry["ip"], entry["user_agent"]) == (None, "127.0.0.1", "guesser/0.1")

    listed = httpx.get(
        f"{api_url}/data-pipeline/audit-logs",
        params={"action": "login.failed"},
        headers=admin.headers,
    ).json()
    (item,) = [i for i in listed["items"] if i["request_id"] == request_id]
    assert item["details"] == {"email": admin.email, "reason": "wrong_password"}


def test_the_audit_log_pages_filters_counts_and_stays_within_the_tenant(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    admin = account(Role.ADMIN)
    auditor = account(Role.AUDITOR, tenant=admin.tenant)
    outsider = account(Role.ADMIN)
    for _ in range(3):
        body = {"name": f"k-{uuid.uuid4().hex[:6]}", "role": "sender"}
        assert httpx.post(f"{api_url}/admin/api-keys", json=body, headers=admin.headers).is_success

    def listed(who: Account, **params: Any) -> dict[str, Any]:
        response = httpx.get(
            f"{api_url}/data-pipeline/audit-logs", params=params, headers=who.headers
        )
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    eventually(
        lambda: len(listed(auditor, action="api_key.issued")["items"]) == 3, 30, "three entries"
    )
    first = listed(auditor, action="api_key.issued", limit=2)
    second = listed(auditor, action="api_key.issued", limit=2, cursor=first["next_cursor"])
    ids = [i["id"] for i in first["items"] + second["items"]]
    assert len(set(ids)) == 3
    assert second["next_cursor"] is None
    assert all(i["actor"] == admin.user_id for i in first["items"] + second["items"])
    assert listed(outsider, action="api_key.issued")["items"] == []
    stats = httpx.get(f"{api_url}/data-pipeline/audit-logs/stats", headers=auditor.headers).json()
    assert stats["by_action"]["api_key.issued"] == 3
    assert stats["by_actor"][admin.user_id] >= 3

    bad = httpx.get(
        f"{api_url}/data-pipeline/audit-logs",
        params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=auditor.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["name"] == "from"
    garbled = httpx.get(
        f"{api_url}/data-pipeline/audit-logs", params={"from": "yesterday"}, headers=auditor.headers
    )
    assert garbled.status_code == 422
    assert "from" in garbled.text
    sender = account(Role.SENDER, tenant=admin.tenant)
    refused = httpx.get(f"{api_url}/data-pipeline/audit-logs", headers=sender.headers)
    assert refused.status_code == 403


def test_no_route_writes_the_audit_log_and_verify_replays_it_exactly(
    api_url: str, account: AccountFactory, projector: None, stack: Settings
) -> None:
    writers = [
        (method, route.path_format)
        for route in create_app(stack).routes
        if isinstance(route, HTTPRoute) and "audit" in route.path_format
        for handler in route.route_handlers
        for method in handler.http_methods - {"GET", "HEAD", "OPTIONS"}
    ]
    assert writers == []
    admin = account(Role.ADMIN)
    request_id = f"v-{uuid.uuid4().hex}"
    body = {"name": "verify-me", "role": "sender"}
    httpx.post(
        f"{api_url}/admin/api-keys",
        json=body,
        headers={**admin.headers, "X-Request-ID": request_id},
    ).raise_for_status()
    eventually(lambda: bool(_entries(stack, request_id)), 30, "the entry")
    verify = subprocess.run(
        [sys.executable, "-m", "infrastructure.entrypoints.cli", "projections", "verify", "audit"],
        env={**stack.to_environ(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "audit_log: same" in verify.stdout

    # An edit made behind the projection's back is found.
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url.reveal()) as conn:
        conn.execute("UPDATE audit_log SET ip = '6.6.6.6' WHERE request_id = %s", (request_id,))
    tampered = subprocess.run(
        [sys.executable, "-m", "infrastructure.entrypoints.cli", "projections", "verify", "audit"],
        env={**stack.to_environ(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    with psycopg.connect(stack.database_url.reveal()) as conn:
        conn.execute("UPDATE audit_log SET ip = '127.0.0.1' WHERE request_id = %s", (request_id,))
    assert tampered.returncode == 1, tampered.stdout
    assert "DIFFERENT" in tampered.stdout
