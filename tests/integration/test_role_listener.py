"""The listener every role but the api runs on HERALD_METRICS_PORT: metrics, liveness, and a
readiness that answers 503 (never an error) when its checks fail or raise."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import psycopg
import pytest

from domain.identity.roles import Role
from domain.identity.user import UserRegistered, register
from domain.notifications import notification as notifications
from domain.notifications.events import NotificationEvent
from domain.notifications.values import Channel, Content, Priority
from infrastructure.devstack.servers import free_port
from infrastructure.entrypoints.role_health import serving_health
from infrastructure.eventstore import catalog
from infrastructure.eventstore.store import EventStore
from infrastructure.eventstore.tracking import RELAY, follower_lag, save_position
from infrastructure.migrations import migrate
from infrastructure.role_listener import RoleListener
from infrastructure.settings import Settings, SettingsError


@pytest.fixture
def checks() -> dict[str, Any]:
    return {"ready": True, "database": "ok"}


@pytest.fixture
def listener(checks: dict[str, Any]) -> Iterator[str]:
    def readiness() -> dict[str, Any]:
        if checks.get("raise"):
            raise RuntimeError("the check itself failed")
        return checks

    running = RoleListener("relay", "127.0.0.1", 0, readiness)
    running.start()
    yield f"http://127.0.0.1:{running.port}"
    running.stop()


def test_it_serves_metrics_and_liveness(listener: str) -> None:
    metrics = httpx.get(f"{listener}/metrics")
    assert metrics.status_code == 200
    assert "herald_relay_published_events_total" in metrics.text
    live = httpx.get(f"{listener}/health/liveness")
    assert live.json() == {"status": "ok", "role": "relay"}
    assert httpx.get(f"{listener}/elsewhere").status_code == 404


def test_readiness_follows_the_checks(listener: str, checks: dict[str, Any]) -> None:
    assert httpx.get(f"{listener}/health/readiness").status_code == 200
    checks["ready"] = False
    refused = httpx.get(f"{listener}/health/readiness")
    assert refused.status_code == 503
    assert refused.json() == {"role": "relay", "ready": False, "database": "ok"}
    checks["raise"] = True
    failed = httpx.get(f"{listener}/health/readiness")
    assert failed.status_code == 503
    assert failed.json()["error"] == "the check itself failed"


def test_a_port_in_use_is_named(stack: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        settings = msgspec.structs.replace(stack, metrics_port=port)
        with (
            pytest.raises(
                SettingsError,
                match=f"HERALD_METRICS_PORT cannot be listened on at 127.0.0.1:{port}",
            ),
            serving_health(settings, "relay"),
        ):
            pass


def _requested() -> NotificationEvent:
    (event,) = notifications.request(
        tenant_id="acme",
        channel=Channel.EMAIL,
        recipient="ada@example.com",
        content=Content(subject="Hi", body="Hello"),
        priority=Priority.NORMAL,
        send_at=None,
        fallback=(),
        fallback_recipients={},
        metadata={},
        idempotency_key=None,
        requested_by="sender",
        correlation_id=None,
        at=datetime.now(UTC),
    )
    return event


def _registered() -> UserRegistered:
    return register(
        tenant_id="acme",
        email="ops@example.com",
        password_hash="x",
        roles=[Role.ADMIN],
        at=datetime.now(UTC),
    )


def test_a_followers_lag_counts_its_own_events_and_the_age_of_the_oldest(
    fresh_database: str,
) -> None:
    """The relay handles notification events only: identity events after its position are
    not its lag. The age comes from when the oldest waiting event was stored."""
    migrate(fresh_database)
    store = EventStore(fresh_database, catalog.codec(), pool_size=1)
    try:
        first = store.append(uuid.uuid4(), 0, [_requested()])
        store.append(uuid.uuid4(), 0, [_requested()])
        store.append(uuid.uuid4(), 0, [_requested()])
        store.append(uuid.uuid4(), 0, [_registered()])
    finally:
        store.close()
    names = list(catalog.NOTIFICATION_EVENT_NAMES)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(
            "UPDATE stored_events SET recorded_at = now() - interval '90 seconds'"
            " WHERE notification_id > %s",
            (first[0],),
        )
        save_position(conn, RELAY, first[0])
        position, waiting, age = follower_lag(conn, RELAY, names)
        assert (position, waiting) == (first[0], 2)
        assert 89 < age < 120
        _, everything, _ = follower_lag(conn, RELAY, None)
        assert everything == 3
        save_position(conn, RELAY, first[0] + 3)
        assert follower_lag(conn, RELAY, names)[1:] == (0, 0.0)
