"""The notifications projection keeps notification_view exact, and GET serves it."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from domain.identity.roles import Role
from domain.notifications import notification as notifications
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore.store import EventStore
from infrastructure.eventstore.tracking import stored_position
from infrastructure.migrations import migrate
from infrastructure.settings import Settings
from projections.notifications.projector import NAME
from tests.conftest import on_own_database
from tests.e2e.conftest import Account, AccountFactory
from tests.e2e.test_relay import _request_events, _write

BODY = {"channel": "email", "recipient": "ada@example.com", "subject": "s", "body": "b"}


def _eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail("the read model did not catch up in time")
        time.sleep(0.05)


def _view(api_url: str, account: Account, notification_id: str, status: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        response = httpx.get(f"{api_url}/notifications/{notification_id}", headers=account.headers)
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["status"] == status else None

    result: dict[str, Any] = _eventually(check)
    return result


def test_a_request_shows_up_and_then_its_cancellation(
    api_url: str, account: AccountFactory, projector: None
) -> None:
    sender = account(Role.SENDER)
    created = httpx.post(f"{api_url}/notifications", json=BODY, headers=sender.headers).json()
    view = _view(api_url, sender, created["id"], "requested")
    assert (view["channel"], view["recipient"], view["priority"]) == (
        "email",
        "ada@example.com",
        "normal",
    )
    assert view["position"] == created["position"]
    httpx.post(f"{api_url}/notifications/{created['id']}/cancel", json={}, headers=sender.headers)
    assert _view(api_url, sender, created["id"], "cancelled")["position"] > created["position"]


def test_scheduled_and_sent_states_are_reflected(
    api_url: str, account: AccountFactory, projector: None, event_store: EventStore
) -> None:
    sender = account(Role.SENDER)
    later = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    scheduled = httpx.post(
        f"{api_url}/notifications",
        json={**BODY, "send_at": later.isoformat()},
        headers=sender.headers,
    ).json()
    view = _view(api_url, sender, scheduled["id"], "scheduled")
    assert datetime.fromisoformat(view["send_at"]) == later

    created = httpx.post(f"{api_url}/notifications", json=BODY, headers=sender.headers).json()
    stream = uuid.UUID(created["id"])
    now = datetime.now(UTC)
    current = notifications.replay(stream, [r.event for r in event_store.load(stream)])
    started = notifications.start_dispatch(current, provider="sandbox", at=now)
    current = notifications.evolve(current, started[0], stream)
    sent = notifications.record_sent(current, provider_message_id="m-42", at=now)
    event_store.append(stream, 1, [*started, *sent])
    view = _view(api_url, sender, created["id"], "sent")
    assert (view["attempts"], view["provider_message_id"]) == (1, "m-42")


def test_another_tenant_cannot_see_it(
    api_url: str, account: AccountFactory, projector: None
) -> None:
    sender, stranger = account(Role.SENDER), account(Role.AUDITOR)
    created = httpx.post(f"{api_url}/notifications", json=BODY, headers=sender.headers).json()
    _view(api_url, sender, created["id"], "requested")
    response = httpx.get(f"{api_url}/notifications/{created['id']}", headers=stranger.headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def _snapshot(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT notification_id, status, version, position FROM notification_view"
            " ORDER BY notification_id"
        ).fetchall()


def _position(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return stored_position(conn, NAME)


def test_a_projector_killed_mid_stream_ends_exact_and_a_replay_changes_nothing(
    stack: Settings, fresh_database: str
) -> None:
    migrate(fresh_database)
    positions = _write(fresh_database, _request_events(f"view-{uuid.uuid4().hex[:6]}", 60_000))
    settings = on_own_database(stack, fresh_database)
    with Supervisor() as supervisor:
        supervisor.start(role_spec("projector", settings))
        _eventually(lambda: _position(fresh_database) > 0, 60)
        os.kill(supervisor.pids["projector"], signal.SIGKILL)
    assert _position(fresh_database) < positions[-1], "finished before it could be killed"
    with Supervisor() as supervisor:
        supervisor.start(role_spec("projector", settings))
        _eventually(lambda: _position(fresh_database) == positions[-1], 120)
        exact = _snapshot(fresh_database)
        assert len(exact) == 60_000
        assert {row[1:3] for row in exact} == {("requested", 1)}
        assert sorted(row[3] for row in exact) == positions
