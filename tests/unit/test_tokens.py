"""Tokens carry and check every registered claim; keys rotate by kid without logging anyone out."""

from __future__ import annotations

import time

import msgspec
import pytest

from domain.identity.roles import Role
from infrastructure.auth.tokens import InvalidTokenError, TokenService
from infrastructure.settings import Secret, SettingsError, load_settings

OLD = "old-signing-key-that-is-at-least-32-bytes"
NEW = "new-signing-key-that-is-at-least-32-bytes"


def _service(current: str, previous: str | None = None) -> TokenService:
    settings = load_settings(environ={"HERALD_JWT_SECRET": current}, env_file=None)
    if previous is not None:
        settings = msgspec.structs.replace(settings, jwt_previous_secrets=Secret(previous))
    return TokenService(settings)


def _issue(service: TokenService) -> str:
    return service.issue(
        "access", subject="u1", tenant_id="t1", family="f1", roles=frozenset({Role.SENDER})
    ).token


def test_an_access_token_round_trips_to_a_principal() -> None:
    service = _service(NEW)
    principal = service.principal(_issue(service))
    assert (principal.subject, principal.tenant_id, principal.kind) == ("u1", "t1", "user")
    assert principal.roles == frozenset({Role.SENDER})
    assert principal.expires_at is not None
    assert principal.issued_at is not None
    assert principal.expires_at - int(principal.issued_at) == 900


def test_tokens_signed_with_a_retired_key_verify_during_rotation() -> None:
    old_token = _issue(_service(OLD))
    rotated = _service(NEW, previous=OLD)
    assert rotated.principal(old_token).subject == "u1"
    assert rotated.principal(_issue(rotated)).subject == "u1"


def test_once_the_retired_key_is_dropped_its_tokens_fail() -> None:
    old_token = _issue(_service(OLD))
    with pytest.raises(InvalidTokenError):
        _service(NEW).principal(old_token)


def test_a_refresh_token_is_not_an_access_token() -> None:
    service = _service(NEW)
    refresh = service.issue("refresh", subject="u1", tenant_id="t1", family="f1").token
    with pytest.raises(InvalidTokenError):
        service.principal(refresh)
    assert service.decode(refresh, "refresh")["fam"] == "f1"


@pytest.mark.parametrize("variable", ["HERALD_JWT_SECRET", "HERALD_JWT_PREVIOUS_SECRETS"])
def test_signing_keys_shorter_than_32_bytes_are_refused_at_start(variable: str) -> None:
    with pytest.raises(SettingsError, match=f"{variable} must be at least 32 bytes"):
        load_settings(environ={variable: "too-short"}, env_file=None)


def test_a_remembered_token_is_still_refused_once_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("infrastructure.auth.tokens.LEEWAY_S", 0)
    settings = load_settings(environ={"HERALD_JWT_SECRET": NEW}, env_file=None)
    service = TokenService(msgspec.structs.replace(settings, access_token_ttl_s=1))
    token = _issue(service)
    principal = service.principal(token)
    assert service.principal(token) is principal  # served from the verified-token cache
    time.sleep(1.1)
    with pytest.raises(InvalidTokenError):
        service.principal(token)
