"""Registration, login, refresh, logout and every way a token must be refused, over HTTP."""

from __future__ import annotations

import base64
import json
import statistics
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

from infrastructure.auth.tokens import key_id
from infrastructure.settings import Settings
from tests.conftest import TEST_SIGNING_KEY
from tests.e2e.conftest import PASSWORD, AccountFactory, login


def _register(api_url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{api_url}/auth/register", json=body)


def _me(api_url: str, token: str) -> httpx.Response:
    return httpx.get(f"{api_url}/auth/me", headers={"Authorization": f"Bearer {token}"})


def _fresh_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def test_register_then_login_then_me(api_url: str) -> None:
    tenant = _fresh_tenant()
    created = _register(api_url, tenant=tenant, email="Ada@Example.com", password=PASSWORD)
    assert created.status_code == 201, created.text
    assert created.json()["roles"] == ["user"]
    assert created.json()["email"] == "ada@example.com"
    tokens = login(api_url, tenant, "ada@example.com").json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    me = _me(api_url, tokens["access_token"])
    assert me.status_code == 200
    assert me.json()["user"]["email"] == "ada@example.com"
    assert me.json()["user"]["tenant"] == tenant


def test_the_seeds_login_without_a_tenant_signs_in_to_the_default_tenant_only(
    api_url: str,
) -> None:
    email = f"seed-{uuid.uuid4().hex[:8]}@example.com"
    other_password = "another horse battery staple"
    assert _register(api_url, tenant="default", email=email, password=PASSWORD).is_success
    elsewhere = _fresh_tenant()
    assert _register(api_url, tenant=elsewhere, email=email, password=other_password).is_success
    # As the seed sends it: email and password only.
    seed = httpx.post(f"{api_url}/auth/login", json={"email": email, "password": PASSWORD})
    assert seed.status_code == 200, seed.text
    assert _me(api_url, seed.json()["access_token"]).json()["user"]["tenant"] == "default"
    # The other tenant's account is not searched for: its password does not sign in here.
    other = httpx.post(f"{api_url}/auth/login", json={"email": email, "password": other_password})
    assert other.status_code == 401
    named = login(api_url, elsewhere, email, other_password)
    assert named.status_code == 200
    assert _me(api_url, named.json()["access_token"]).json()["user"]["tenant"] == elsewhere


def test_one_email_registers_once_per_tenant(api_url: str) -> None:
    tenant = _fresh_tenant()
    assert _register(api_url, tenant=tenant, email="x@example.com", password=PASSWORD).is_success
    again = _register(api_url, tenant=tenant, email="X@example.com", password=PASSWORD)
    assert again.status_code == 409
    assert again.json()["errors"] == [
        {"name": "email", "reason": "is already registered in this tenant"}
    ]
    other_tenant = _register(
        api_url, tenant=_fresh_tenant(), email="x@example.com", password=PASSWORD
    )
    assert other_tenant.status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": "é" * 37}, "password"),  # 74 bytes > 72
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": PASSWORD, "admin": True}, "admin"),
    ],
    ids=["too-short", "over-72-bytes", "bad-email", "unknown-field"],
)
def test_bad_registrations_are_422_naming_the_field(
    api_url: str, body: dict[str, Any], field: str
) -> None:
    response = _register(api_url, tenant=_fresh_tenant(), **body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in json.dumps(response.json()["errors"])


def test_unknown_email_and_wrong_password_look_and_take_the_same(
    api_url: str, account: AccountFactory
) -> None:
    user = account()
    wrong, unknown = [], []
    for _ in range(3):
        started = time.perf_counter()
        wrong_response = login(api_url, user.tenant, user.email, "wrong password 123")
        wrong.append(time.perf_counter() - started)
        started = time.perf_counter()
        unknown_response = login(api_url, user.tenant, "nobody@example.com", "wrong password 123")
        unknown.append(time.perf_counter() - started)
    assert wrong_response.status_code == unknown_response.status_code == 401
    assert wrong_response.json()["detail"] == unknown_response.json()["detail"]
    # Both run one bcrypt check (about a quarter second at cost 12); without the dummy hash
    # the unknown email would answer in a few milliseconds.
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2.0, (wrong, unknown)


def test_refresh_rotates_and_a_reused_refresh_token_revokes_its_family(
    api_url: str, account: AccountFactory
) -> None:
    user = account()
    first = httpx.post(f"{api_url}/auth/refresh", json={"refresh_token": user.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != user.refresh_token
    assert _me(api_url, rotated["access_token"]).status_code == 200

    reused = httpx.post(f"{api_url}/auth/refresh", json={"refresh_token": user.refresh_token})
    assert reused.status_code == 401
    assert user.refresh_token not in reused.text
    # The theft is assumed: the newer token of the same family is dead too.
    newer = httpx.post(f"{api_url}/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert newer.status_code == 401


def test_logout_revokes_the_access_token_and_its_refresh_family(
    api_url: str, account: AccountFactory
) -> None:
    user = account()
    assert httpx.post(f"{api_url}/auth/logout", headers=user.headers).status_code == 204
    assert _me(api_url, user.access_token).status_code == 401
    again = httpx.post(f"{api_url}/auth/refresh", json={"refresh_token": user.refresh_token})
    assert again.status_code == 401


def _claims(account_user_id: str, tenant: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "herald",
        "aud": "herald-api",
        "sub": account_user_id,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "tid": tenant,
        "fam": "f",
        "roles": ["admin"],
    }
    claims.update(overrides)
    return claims


def _sign(claims: dict[str, Any], key: str = TEST_SIGNING_KEY) -> str:
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": key_id(key)})


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["roles"] = ["admin", "operator"]
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def _alg_none(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': key_id(TEST_SIGNING_KEY)})}.{part(claims)}."


def test_a_well_formed_token_is_accepted(api_url: str, account: AccountFactory) -> None:
    """The control for the refusals below: the same construction, unaltered, is let in."""
    user = account()
    assert _me(api_url, _sign(_claims(user.user_id, user.tenant))).status_code == 200


@pytest.mark.parametrize(
    "forge",
    [
        "alg-none",
        "other-key",
        "expired",
        "not-yet-valid",
        "wrong-issuer",
        "wrong-audience",
        "tampered-payload",
        "refresh-as-access",
        "missing-jti",
    ],
)
def test_bad_tokens_are_401_and_never_echoed(
    api_url: str, account: AccountFactory, stack: Settings, forge: str
) -> None:
    user = account()
    now = int(time.time())
    claims = _claims(user.user_id, user.tenant)
    token = {
        "alg-none": lambda: _alg_none(claims),
        "other-key": lambda: _sign(claims, "another-key-that-is-long-enough-to-be-valid!!"),
        "expired": lambda: _sign({**claims, "iat": now - 3600, "nbf": now - 3600, "exp": now - 60}),
        "not-yet-valid": lambda: _sign({**claims, "nbf": now + 600}),
        "wrong-issuer": lambda: _sign({**claims, "iss": "someone-else"}),
        "wrong-audience": lambda: _sign({**claims, "aud": "another-api"}),
        "tampered-payload": lambda: _tamper(user.access_token),
        "refresh-as-access": lambda: user.refresh_token,
        "missing-jti": lambda: _sign({k: v for k, v in claims.items() if k != "jti"}),
    }[forge]()
    response = _me(api_url, token)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "Bearer" in response.headers["www-authenticate"]
    payload = token.split(".")[1]
    assert token not in response.text
    assert payload not in response.text


def test_missing_credentials_are_401_with_a_challenge(api_url: str) -> None:
    response = httpx.get(f"{api_url}/auth/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_changing_the_password_ends_every_session_and_the_new_one_works(
    api_url: str, account: AccountFactory
) -> None:
    user = account()
    new_password = "an entirely new passphrase"
    wrong = httpx.post(
        f"{api_url}/auth/password",
        json={"current_password": "not it at all!", "new_password": new_password},
        headers=user.headers,
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["name"] == "current_password"
    changed = httpx.post(
        f"{api_url}/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=user.headers,
    )
    assert changed.status_code == 204
    assert _me(api_url, user.access_token).status_code == 401
    assert login(api_url, user.tenant, user.email).status_code == 401
    fresh = login(api_url, user.tenant, user.email, new_password)
    assert fresh.status_code == 200
    # A login right after the revocation, even within the same second, is not caught by it.
    assert _me(api_url, fresh.json()["access_token"]).status_code == 200
