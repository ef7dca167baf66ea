"""Every event is stored with who recorded it and from where, and X-Forwarded-For counts only
when the peer is a trusted proxy, for the audit trail and the rate limits alike."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import pytest
import redis
from litestar.testing import TestClient
from litestar.types import ASGIApp, Receive, Scope, Send

from domain.identity.roles import Role
from domain.identity.session import LoginFailed, LoginRefusal
from infrastructure.auth.tokens import TokenService
from infrastructure.entrypoints.app import asgi_app
from infrastructure.eventstore import catalog, meta
from infrastructure.eventstore.store import EventStore
from infrastructure.eventstore.writer import GroupCommitWriter, StreamAppend
from infrastructure.settings import Settings

OPENAPI = "/docs/openapi.json"


def _stored_meta(settings: Settings, stream_id: uuid.UUID) -> list[meta.EventMeta | None]:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.reveal()) as conn:
        rows = conn.execute(
            "SELECT meta FROM stored_events WHERE originator_id = %s ORDER BY originator_version",
            (stream_id,),
        ).fetchall()
    # Opened as the audit projection opens it: the client's address may be sealed.
    codec = catalog.codec_for(settings)
    return [codec.decode_meta(bytes(row[0]) if row[0] is not None else None) for row in rows]


def _failed_login(at: Any) -> LoginFailed:
    return LoginFailed(at=at, tenant_id="t", email="e@example.com", reason=LoginRefusal.DISABLED)


def test_both_writers_store_the_bound_metadata_with_each_event(stack: Settings) -> None:
    assert stack.database_url is not None
    database_url = stack.database_url.reveal()
    now = datetime.now(UTC)
    grouped, single = uuid.uuid4(), uuid.uuid4()

    async def through_the_writer() -> None:
        writer = GroupCommitWriter(database_url, catalog.codec())
        await writer.start()
        try:
            with meta.request(ip="198.51.100.7", user_agent="probe/1", request_id="r-77"):
                meta.set_actor("u-9", "user", ("admin",), "acme")
                with meta.command("Probe"):
                    await writer.append([StreamAppend(grouped, 0, [_failed_login(now)] * 2)])
        finally:
            await writer.stop()

    asyncio.run(through_the_writer())
    store = EventStore(database_url, catalog.codec(), pool_size=1)
    try:
        with meta.request(ip="203.0.113.1", user_agent=None, request_id="r-78"):
            store.append(single, 0, [_failed_login(now)])
        store.append(uuid.uuid4(), 0, [_failed_login(now)])  # outside any request: no metadata
    finally:
        store.close()

    first, second = _stored_meta(stack, grouped)
    assert first == second
    assert first is not None
    assert (first.ip, first.user_agent, first.request_id) == ("198.51.100.7", "probe/1", "r-77")
    assert (first.actor, first.roles, first.tenant, first.command) == (
        "u-9",
        ("admin",),
        "acme",
        "Probe",
    )
    assert first.command_id is not None
    (alone,) = _stored_meta(stack, single)
    assert alone is not None
    assert (alone.ip, alone.request_id, alone.actor) == ("203.0.113.1", "r-78", None)


def _from_peer(peer: str, app: ASGIApp) -> ASGIApp:
    """The app as reached from `peer` (the test client's own address is not an IP)."""

    async def reached(scope: Scope, receive: Receive, send: Send) -> None:
        if "client" in scope:  # every HTTP scope; never the lifespan one
            scope["client"] = (peer, 5555)
        await app(scope, receive, send)

    return reached


def _register(client: TestClient[Any], forwarded: str, **headers: str) -> uuid.UUID:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    response = client.post(
        "/auth/register",
        json={"tenant": "meta", "email": email, "password": "a long enough password"},
        headers={"X-Forwarded-For": forwarded, "User-Agent": "walker/2", **headers},
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


@pytest.mark.parametrize(
    ("trusted", "expected"), [("10.0.0.0/8", "198.51.100.23"), ("", "10.0.0.7")]
)
def test_the_client_address_stored_is_forwarded_only_from_a_trusted_proxy(
    stack: Settings, trusted: str, expected: str
) -> None:
    settings = msgspec.structs.replace(
        stack, trusted_proxies=trusted, rate_limit_anonymous="1000/1s"
    )
    admin = TokenService(settings).issue(
        "access", subject="a-1", tenant_id="meta", family="f", roles=frozenset({Role.ADMIN})
    )
    with TestClient(app=_from_peer("10.0.0.7", asgi_app(settings))) as client:
        anonymous = _register(client, "198.51.100.23", **{"X-Request-ID": "walk-1"})
        by_admin = _register(client, "198.51.100.23", Authorization=f"Bearer {admin.token}")
    (stored,) = _stored_meta(stack, anonymous)
    assert stored is not None
    assert (stored.ip, stored.user_agent, stored.request_id) == (expected, "walker/2", "walk-1")
    assert (stored.actor, stored.command) == (None, "RegisterUser")
    (stored,) = _stored_meta(stack, by_admin)
    assert stored is not None
    assert (stored.actor, stored.actor_kind, stored.roles, stored.tenant) == (
        "a-1",
        "user",
        ("admin",),
        "meta",
    )


def _clear_limits(settings: Settings) -> None:
    assert settings.redis_url is not None
    client = redis.Redis.from_url(settings.redis_url.reveal())
    for key in client.scan_iter(match="herald:rl:*"):
        client.delete(key)
    client.close()


def test_per_ip_rate_limits_count_the_forwarded_address_only_from_a_trusted_proxy(
    stack: Settings,
) -> None:
    _clear_limits(stack)
    trusting = msgspec.structs.replace(
        stack, trusted_proxies="10.0.0.0/8", rate_limit_anonymous="1/1m"
    )
    with TestClient(app=_from_peer("10.0.0.8", asgi_app(trusting))) as client:
        one = client.get(OPENAPI, headers={"X-Forwarded-For": "198.51.100.1"})
        other = client.get(OPENAPI, headers={"X-Forwarded-For": "198.51.100.2"})
        again = client.get(OPENAPI, headers={"X-Forwarded-For": "198.51.100.1"})
    assert [one.status_code, other.status_code, again.status_code] == [200, 200, 429]

    _clear_limits(stack)
    distrusting = msgspec.structs.replace(stack, rate_limit_anonymous="1/1m")
    with TestClient(app=_from_peer("10.0.0.8", asgi_app(distrusting))) as client:
        one = client.get(OPENAPI, headers={"X-Forwarded-For": "198.51.100.1"})
        other = client.get(OPENAPI, headers={"X-Forwarded-For": "198.51.100.2"})
    assert [one.status_code, other.status_code] == [200, 429]
