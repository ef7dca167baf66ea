"""Rate limits (429 with headers, tiers, exemptions, failure modes) and hardening headers."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from domain.identity.roles import Role
from infrastructure.auth.tokens import TokenService
from infrastructure.devstack.servers import free_port
from infrastructure.entrypoints.app import asgi_app
from infrastructure.settings import Settings
from tests.conftest import with_redis

OPENAPI = "/docs/openapi.json"


@pytest.fixture(autouse=True)
def _fresh_counters(stack: Settings) -> None:
    assert stack.redis_url is not None
    client = redis.Redis.from_url(stack.redis_url.reveal())
    for key in client.scan_iter(match="herald:rl:*"):
        client.delete(key)
    client.close()


def _client(settings: Settings, **overrides: Any) -> TestClient:  # type: ignore[type-arg]
    app = asgi_app(msgspec.structs.replace(settings, **overrides))
    return TestClient(app=app)


def _admin_token(settings: Settings) -> dict[str, str]:
    issued = TokenService(settings).issue(
        "access",
        subject=str(uuid.uuid4()),
        tenant_id=f"t-{uuid.uuid4().hex[:8]}",
        family="f",
        roles=frozenset({Role.ADMIN}),
    )
    return {"Authorization": f"Bearer {issued.token}"}


def test_anonymous_callers_get_429_with_headers_then_the_window_resets(stack: Settings) -> None:
    with _client(stack, rate_limit_anonymous="3/1s,5/10s") as client:
        allowed = [client.get(OPENAPI) for _ in range(3)]
        denied = client.get(OPENAPI)
        time.sleep(1.1)
        after_reset = client.get(OPENAPI)
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [r.headers["ratelimit-remaining"] for r in allowed] == ["2", "1", "0"]
    assert allowed[0].headers["ratelimit-limit"] == "3"
    assert denied.status_code == 429
    assert denied.headers["content-type"] == "application/problem+json"
    assert int(denied.headers["retry-after"]) >= 1
    assert denied.headers["ratelimit-remaining"] == "0"
    assert "ratelimit-reset" in denied.headers
    assert after_reset.status_code == 200
    # The 10 s tier counted the 4 allowed requests, not the denied one: one left.
    assert after_reset.headers["ratelimit-remaining"] == "1"


def test_health_probes_are_never_limited(stack: Settings) -> None:
    with _client(stack, rate_limit_anonymous="1/1m") as client:
        statuses = {client.get(path).status_code for path in ["/health/liveness"] * 20}
    assert statuses == {200}


def test_authenticated_callers_get_their_own_higher_tiers(stack: Settings) -> None:
    headers = _admin_token(stack)
    with _client(stack, rate_limit_anonymous="1/1m", rate_limit_authenticated="5/1m") as client:
        statuses = [client.get("/admin/users", headers=headers).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def test_login_attempts_are_limited_per_account(stack: Settings) -> None:
    body = {"tenant": "limits", "email": f"{uuid.uuid4().hex}@example.com", "password": "x" * 12}
    with _client(stack, rate_limit_login="2/1m") as client:
        statuses = [client.post("/auth/login", json=body).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


def test_the_flag_turns_limits_off(stack: Settings) -> None:
    with _client(stack, rate_limit_anonymous="1/1m", rate_limit_enabled=False) as client:
        statuses = {client.get(OPENAPI).status_code for _ in range(5)}
    assert statuses == {200}


@pytest.mark.parametrize(("fail_open", "expected"), [(True, 200), (False, 503)])
def test_without_redis_the_limiter_fails_as_configured(
    stack: Settings, fail_open: bool, expected: int
) -> None:
    dead = with_redis(stack, f"redis://127.0.0.1:{free_port()}/0")
    with _client(dead, rate_limit_fail_open=fail_open) as client:
        assert client.get(OPENAPI).status_code == expected


def test_security_headers_are_on_every_response(stack: Settings) -> None:
    with _client(stack) as client:
        responses = [client.get(OPENAPI), client.get("/nowhere"), client.get("/auth/me")]
        docs = client.get("/docs")
    for response in responses:
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["strict-transport-security"].startswith("max-age=")
    assert responses[1].headers["content-security-policy"].startswith("default-src 'none'")
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


def test_cors_admits_only_the_configured_origins(stack: Settings) -> None:
    allowed_origin = "https://admin.example.com"
    with _client(stack, cors_origins=allowed_origin) as client:
        allowed = client.get(OPENAPI, headers={"Origin": allowed_origin})
        refused = client.get(OPENAPI, headers={"Origin": "https://evil.example.com"})
    assert allowed.headers["access-control-allow-origin"] == allowed_origin
    assert "access-control-allow-origin" not in refused.headers


def test_bodies_over_the_limit_are_413(stack: Settings) -> None:
    body = {"tenant": "t", "email": "a@example.com", "password": "p" * 4000}
    with _client(stack, max_body_bytes=1024) as client:
        response = client.post("/auth/register", json=body)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
