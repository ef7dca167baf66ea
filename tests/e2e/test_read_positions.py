"""Read-your-writes at its edges: a `min_position` no command returned, and one the read
models do not reach in time."""

from __future__ import annotations

import time

import httpx
import msgspec

from domain.identity.roles import Role
from infrastructure.devstack import prepare_servers
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.servers import free_port
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore import catalog
from infrastructure.eventstore.store import EventStore
from infrastructure.settings import Settings
from tests.conftest import on_own_database
from tests.e2e.conftest import Account, AccountFactory, account_factory

EMAIL = {"channel": "email", "recipient": "ada@example.com", "subject": "s", "body": "b"}


def _reads(api_url: str, account: Account, min_position: int | str) -> httpx.Response:
    return httpx.get(
        f"{api_url}/notifications",
        params={"min_position": min_position},
        headers=account.headers,
        timeout=30,
    )


def test_a_position_past_the_end_of_the_log_is_a_422_at_once(
    api_url: str, account: AccountFactory, projector: None
) -> None:
    sender = account(Role.SENDER)
    started = time.monotonic()
    response = _reads(api_url, sender, 10**12)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["name"] == "min_position"
    assert time.monotonic() - started < 1  # no command returned it: nothing to wait for
    bad = _reads(api_url, sender, "soon")
    assert bad.status_code == 422
    assert "min_position" in bad.text


def test_a_position_not_reached_in_time_is_a_503_with_retry_after(
    api_settings: Settings, fresh_database: str
) -> None:
    """An api on a database of its own, with no relay or projector: its read models never
    reach the position its own write returned."""
    port = free_port()
    settings = msgspec.structs.replace(
        on_own_database(api_settings, fresh_database),
        http_port=port,
        public_url=f"http://127.0.0.1:{port}",
        read_wait_ms=300,
    )
    prepare_servers(settings)
    store = EventStore(fresh_database, catalog.codec_for(settings), pool_size=1)
    try:
        with Supervisor() as supervisor:
            supervisor.start(role_spec("api", settings), ready_timeout=30)
            accounts = account_factory(settings.public_url, store, settings.bcrypt_rounds)
            sender = accounts(Role.SENDER)
            created = httpx.post(
                f"{settings.public_url}/notifications", json=EMAIL, headers=sender.headers
            ).json()
            response = _reads(settings.public_url, sender, created["position"])
    finally:
        store.close()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert "position" in response.json()["detail"]
