"""The relay publishes every notification event exactly where and as often as it must."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from domain.identity.roles import Role
from domain.notifications import notification as notifications
from domain.notifications.values import Channel, Content, Priority
from infrastructure.devstack import servers
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore import catalog
from infrastructure.eventstore.tracking import stored_position
from infrastructure.eventstore.writer import GroupCommitWriter, StreamAppend
from infrastructure.kafka.topics import notifications_topic
from infrastructure.migrations import migrate
from infrastructure.relay import TRACKING_NAME
from infrastructure.settings import Settings
from tests.conftest import on_own_database
from tests.e2e.conftest import AccountFactory
from tests.kafka_helpers import positions_on_topic


def _positions(database_url: str, tenant: str) -> set[int]:
    """Every position holding an event of `tenant`'s notifications."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, topic, state FROM stored_events"
            " WHERE topic LIKE 'Notification%%' OR topic LIKE 'Dispatch%%'"
        ).fetchall()
    codec = catalog.codec()
    return {
        int(p) for p, t, s in rows if getattr(codec.decode(t, bytes(s)), "tenant_id", "") == tenant
    }


def test_50_clients_5000_notifications_each_event_once_on_kafka(
    api_url: str, account: AccountFactory, stack: Settings, relay: None
) -> None:
    sender = account(Role.SENDER)
    body = {"channel": "email", "recipient": "a@example.com", "subject": "s", "body": "b"}

    async def client(http: httpx.AsyncClient) -> list[str]:
        ids = []
        for _ in range(100):
            response = await http.post("/notifications", json=body, headers=sender.headers)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        return ids

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
            batches = await asyncio.gather(*(client(http) for _ in range(50)))
        return [i for batch in batches for i in batch]

    ids = asyncio.run(run())
    assert len(ids) == len(set(ids)) == 5000

    assert stack.database_url is not None
    with psycopg.connect(stack.database_url.reveal()) as conn:
        per_id: dict[str, int] = dict(
            conn.execute(
                "SELECT originator_id::text, count(*) FROM stored_events"
                " WHERE originator_id = ANY(%s) AND topic = 'NotificationRequested@1'"
                " GROUP BY originator_id",
                ([uuid.UUID(i) for i in ids],),
            ).fetchall()
        )
    assert set(per_id) == set(ids)
    assert set(per_id.values()) == {1}

    expected = _positions(stack.database_url.reveal(), sender.tenant)
    assert len(expected) == 5000
    assert stack.kafka_bootstrap is not None
    seen = positions_on_topic(
        stack.kafka_bootstrap,
        notifications_topic(stack.namespace),
        sender.tenant,
        lambda s: expected <= set(s),
        timeout=120,
    )
    assert set(seen) == expected
    assert set(seen.values()) == {1}, "a position was published more than once"


def _request_events(tenant: str, count: int) -> list[StreamAppend]:
    now = datetime.now(UTC)
    content = Content(subject="s", body="b")
    return [
        StreamAppend(
            uuid.uuid4(),
            0,
            notifications.request(
                tenant_id=tenant,
                channel=Channel.EMAIL,
                recipient="a@example.com",
                content=content,
                priority=Priority.NORMAL,
                send_at=None,
                fallback=(),
                metadata={},
                idempotency_key=None,
                requested_by="test",
                correlation_id=None,
                at=now,
            ),
        )
        for _ in range(count)
    ]


def _write(database_url: str, appends: list[StreamAppend]) -> list[int]:
    async def go() -> list[int]:
        writer = GroupCommitWriter(database_url, catalog.codec())
        await writer.start()
        try:
            return await writer.append(appends)
        finally:
            await writer.stop()

    return asyncio.run(go())


def _relay_position(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return stored_position(conn, TRACKING_NAME)


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_relay_killed_mid_stream_resumes_without_a_gap(
    stack: Settings, fresh_database: str
) -> None:
    migrate(fresh_database)
    tenant = f"relay-{uuid.uuid4().hex[:8]}"
    # Enough that the relay (about 60k events/s here) is still busy when it is killed.
    positions = _write(fresh_database, _request_events(tenant, 150_000))
    settings = on_own_database(stack, fresh_database)
    with Supervisor() as supervisor:
        supervisor.start(role_spec("relay", settings))
        _wait(lambda: _relay_position(fresh_database) > 0, 60, "the relay to start publishing")
        os.kill(supervisor.pids["relay"], signal.SIGKILL)
        killed_at = _relay_position(fresh_database)
    assert killed_at < positions[-1], "the relay finished before it could be killed"
    with Supervisor() as supervisor:
        supervisor.start(role_spec("relay", settings))
        _wait(lambda: _relay_position(fresh_database) == positions[-1], 120, "the relay to finish")
    assert settings.kafka_bootstrap is not None
    seen = positions_on_topic(
        settings.kafka_bootstrap,
        notifications_topic(settings.namespace),
        tenant,
        lambda s: set(positions) <= set(s),
        timeout=120,
    )
    assert set(seen) == set(positions), "positions missing on Kafka"


def test_after_the_broker_loses_everything_the_relay_publishes_again(
    stack: Settings, fresh_database: str, tmp_path: Path
) -> None:
    migrate(fresh_database)
    tenant = f"lost-{uuid.uuid4().hex[:8]}"
    positions = _write(fresh_database, _request_events(tenant, 500))
    port = servers.free_port()
    broker = servers.kafka_broker(port, tmp_path / "kafka.log")
    settings = msgspec.structs.replace(
        on_own_database(stack, fresh_database), kafka_bootstrap=broker.url
    )
    with Supervisor() as outer:
        outer.start(broker)
        with Supervisor() as supervisor:
            supervisor.start(role_spec("relay", settings))
            _wait(lambda: _relay_position(fresh_database) == positions[-1], 60, "publication")
            # The embedded broker keeps nothing: restarting it empties every topic.
            os.kill(outer.pids["kafka"], signal.SIGKILL)
            _wait(lambda: not servers.port_open("127.0.0.1", port), 10, "the broker to die")
            outer.check()

            def restarted() -> bool:
                outer.check()  # the supervisor restarts the dead broker, empty
                return broker.ready()

            _wait(restarted, 60, "the broker to restart")
            more = _write(fresh_database, _request_events(tenant, 10))
            # Publishing these fails, the relay finds the broker empty, and starts over.
            _wait(lambda: _relay_position(fresh_database) == more[-1], 90, "republication")
            seen: Counter[int] = positions_on_topic(
                broker.url,
                notifications_topic(settings.namespace),
                tenant,
                lambda s: set(positions + more) <= set(s),
                timeout=120,
            )
    assert set(seen) == set(positions + more)
