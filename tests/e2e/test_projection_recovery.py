"""The read models stay exact through crashes, broker loss and rebuilds: checked by `verify`."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg
import pytest
import redis

from domain.notifications import notification as notifications
from domain.notifications.events import NotificationEvent
from domain.notifications.notification import Notification
from domain.notifications.values import Channel, Content, Priority
from infrastructure.devstack import servers
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore import catalog
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION, stored_position
from infrastructure.eventstore.writer import GroupCommitWriter, StreamAppend
from infrastructure.migrations import migrate
from infrastructure.redis_keys import RedisKeys
from infrastructure.settings import Settings
from tests.conftest import on_own_database
from tests.e2e.conftest import herald
from tests.kafka_helpers import eventually

Step = Callable[[Notification, datetime], list[NotificationEvent]]

# Lifecycles a notification may go through after it is requested, as the dispatcher will
# drive them: each is a list of steps, applied in order.
LIFECYCLES: list[list[Step]] = [
    [],
    [lambda n, at: notifications.cancel(n, by="client", reason=None, at=at)],
    [
        lambda n, at: notifications.start_dispatch(n, provider="sandbox", at=at),
        lambda n, at: notifications.record_sent(n, provider_message_id=f"m-{n.id}", at=at),
        lambda n, at: notifications.record_delivered(n, provider_event_id=None, at=at),
        lambda n, at: notifications.record_opened(n, provider_event_id=None, at=at),
    ],
    [
        lambda n, at: notifications.start_dispatch(n, provider="sandbox", at=at),
        lambda n, at: notifications.record_failure(n, reason="timeout", permanent=False, at=at),
        lambda n, at: notifications.schedule_retry(n, retry_at=at, at=at),
        lambda n, at: notifications.start_dispatch(n, provider="sandbox", at=at),
        lambda n, at: notifications.record_sent(n, provider_message_id=f"m-{n.id}", at=at),
    ],
    [
        lambda n, at: notifications.start_dispatch(n, provider="sandbox", at=at),
        lambda n, at: notifications.record_failure(n, reason="no such user", permanent=True, at=at),
        lambda n, at: notifications.dead_letter(n, reason="no such user", at=at),
    ],
]


def _requested(
    tenant: str, index: int, at: datetime
) -> tuple[Notification, list[NotificationEvent]]:
    stream = uuid.uuid4()
    events = notifications.request(
        tenant_id=tenant,
        channel=Channel.EMAIL if index % 3 else Channel.SMS,
        recipient=f"r{index % 40}@example.com" if index % 3 else "+14155550100",
        content=Content(subject="s", body="b"),
        priority=Priority.NORMAL if index % 2 else Priority.HIGH,
        send_at=None,
        fallback=(),
        metadata={},
        idempotency_key=None,
        requested_by="test",
        correlation_id=None,
        at=at,
    )
    current: Notification | None = None
    for event in events:
        current = notifications.evolve(current, event, stream)
    assert current is not None
    return current, events


async def _client(writer: GroupCommitWriter, tenant: str, indexes: range, seed: int) -> int:
    """One client: requests its notifications, then walks each through a random lifecycle,
    one event per append, interleaved with the other clients."""
    rng = random.Random(seed)
    appended = 0
    current: list[Notification] = []
    for index in indexes:
        notification, events = _requested(tenant, index, datetime.now(UTC))
        await writer.append([StreamAppend(notification.id, 0, events)])
        current.append(notification)
        appended += len(events)
    for notification in current:
        state = notification
        for step in rng.choice(LIFECYCLES):
            events = step(state, datetime.now(UTC) + timedelta(seconds=1))
            await writer.append([StreamAppend(state.id, state.version, events)])
            for event in events:
                state = notifications.evolve(state, event, state.id)
            appended += len(events)
    return appended


def _traffic(database_url: str, tenant: str, clients: int, total: int) -> int:
    async def run() -> int:
        writer = GroupCommitWriter(database_url, catalog.codec())
        await writer.start()
        try:
            share = total // clients
            counts = await asyncio.gather(
                *(
                    _client(writer, tenant, range(i * share, (i + 1) * share), seed=i)
                    for i in range(clients)
                )
            )
        finally:
            await writer.stop()
        return sum(counts)

    return asyncio.run(run())


def _position(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return stored_position(conn, NOTIFICATIONS_PROJECTION)


def _head(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM stored_events").fetchone()
    return int(row[0]) if row else 0


def _caught_up(database_url: str) -> bool:
    return _position(database_url) == _head(database_url)


@contextmanager
def _projecting(settings: Settings, database_url: str) -> Iterator[None]:
    """A projector on `database_url`, once it has reached the head of the log."""
    with Supervisor() as supervisor:
        supervisor.start(role_spec("projector", settings))
        eventually(lambda: _caught_up(database_url), 60, "the projection to reach the head")
        yield


def _verified(settings: Settings) -> str:
    result = herald(settings, "projections", "verify", "notifications")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DIFFERENT" not in result.stdout
    return result.stdout


def test_concurrent_clients_and_a_killed_projector_end_in_a_verified_read_model(
    stack: Settings, fresh_database: str
) -> None:
    migrate(fresh_database)
    settings = on_own_database(stack, fresh_database)
    tenant = f"rec-{uuid.uuid4().hex[:6]}"
    with Supervisor() as supervisor:
        supervisor.start(role_spec("relay", settings))
        supervisor.start(role_spec("projector", settings))
        killed: list[int] = []

        def kill_mid_stream() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if 0 < _position(fresh_database) < _head(fresh_database):
                    os.kill(supervisor.pids["projector"], signal.SIGKILL)
                    killed.append(_position(fresh_database))
                    return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_mid_stream)
        killer.start()
        appended = _traffic(fresh_database, tenant, clients=50, total=5000)
        killer.join()
        assert killed, "the projector was not caught mid-stream"
        assert appended > 5000

        def caught_up() -> bool:
            supervisor.check()  # restarts the killed projector
            return _caught_up(fresh_database)

        eventually(caught_up, 120, "the restarted projector to reach the head")
        report = _verified(settings)
    assert "compared up to position" in report
    with psycopg.connect(fresh_database) as conn:
        count = conn.execute("SELECT count(*) FROM notification_view").fetchone()
    assert count == (5000,)


def test_after_the_broker_restarts_empty_the_read_models_reach_the_head(
    stack: Settings, fresh_database: str, tmp_path: Path
) -> None:
    migrate(fresh_database)
    port = servers.free_port()
    broker = servers.kafka_broker(port, tmp_path / "kafka.log")
    settings = msgspec.structs.replace(
        on_own_database(stack, fresh_database), kafka_bootstrap=broker.url
    )
    tenant = f"brk-{uuid.uuid4().hex[:6]}"
    with Supervisor() as outer:
        outer.start(broker)
        with Supervisor() as supervisor:
            supervisor.start(role_spec("relay", settings))
            supervisor.start(role_spec("projector", settings))
            _traffic(fresh_database, tenant, clients=5, total=200)
            eventually(lambda: _caught_up(fresh_database), 60, "the projection")
            os.kill(outer.pids["kafka"], signal.SIGKILL)
            eventually(lambda: not servers.port_open("127.0.0.1", port), 10, "the broker to die")

            def restarted() -> bool:
                outer.check()
                return broker.ready()

            eventually(restarted, 60, "the broker to restart, empty")
            _traffic(fresh_database, tenant, clients=5, total=200)
            eventually(
                lambda: _caught_up(fresh_database),
                90,
                "the read models to reach the head after the broker lost everything",
            )
            _verified(settings)
    with psycopg.connect(fresh_database) as conn:
        count = conn.execute("SELECT count(*) FROM notification_view").fetchone()
    assert count == (400,)


def test_a_rebuild_under_reads_never_serves_an_empty_or_partial_model(
    stack: Settings, fresh_database: str
) -> None:
    migrate(fresh_database)
    settings = on_own_database(stack, fresh_database)
    tenant = f"reb-{uuid.uuid4().hex[:6]}"
    _traffic(fresh_database, tenant, clients=10, total=3000)
    with _projecting(settings, fresh_database):
        seen: list[int] = []
        stop = threading.Event()

        def read() -> None:
            with psycopg.connect(fresh_database, autocommit=True) as conn:
                while not stop.is_set():
                    row = conn.execute(
                        "SELECT count(*), (SELECT count(*) FROM dead_letters)"
                        " FROM notification_view"
                    ).fetchone()
                    assert row is not None
                    seen.append(int(row[0]))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            result = herald(settings, "projections", "rebuild", "notifications")
        finally:
            stop.set()
            reader.join()
        assert result.returncode == 0, result.stdout + result.stderr
        assert "swapped in" in result.stdout
        assert seen, "no read ran during the rebuild"
        assert set(seen) == {3000}, "a read saw a partial model"
        eventually(lambda: _caught_up(fresh_database), 60, "projection")
        _verified(settings)


def test_verify_fails_when_the_read_model_was_tampered_with(
    stack: Settings, fresh_database: str
) -> None:
    migrate(fresh_database)
    settings = on_own_database(stack, fresh_database)
    _traffic(fresh_database, f"tmp-{uuid.uuid4().hex[:6]}", clients=2, total=50)
    with _projecting(settings, fresh_database):
        pass  # project up to the head, then stop
    _verified(settings)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        tampered = conn.execute(
            "UPDATE notification_view SET status = 'tampered'"
            " WHERE notification_id = (SELECT notification_id FROM notification_view LIMIT 1)"
            " RETURNING notification_id"
        ).fetchone()
    result = herald(settings, "projections", "verify", "notifications")
    assert result.returncode == 1
    assert "notification_view: DIFFERENT" in result.stdout
    assert "redis status hashes: same" in result.stdout

    assert settings.redis_url is not None
    assert tampered is not None
    client = redis.Redis.from_url(settings.redis_url.reveal())
    key = RedisKeys(settings.namespace).status(tampered[0])
    client.hset(key, "status", "tampered")
    result = herald(settings, "projections", "verify", "notifications")
    assert "redis status hashes: DIFFERENT" in result.stdout
    assert str(tampered[0]) in result.stdout


@pytest.mark.parametrize("args", [["verify", "nope"], ["rebuild"]])
def test_projection_commands_refuse_unknown_names(stack: Settings, args: list[str]) -> None:
    result = herald(stack, "projections", *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_after_redis_loses_its_keys_the_projector_and_a_rebuild_each_restore_them(
    stack: Settings, fresh_database: str
) -> None:
    migrate(fresh_database)
    settings = on_own_database(stack, fresh_database)
    tenant = f"lost-{uuid.uuid4().hex[:6]}"
    _traffic(fresh_database, tenant, clients=4, total=200)
    assert settings.redis_url is not None
    client = redis.Redis.from_url(settings.redis_url.reveal())
    keys = RedisKeys(settings.namespace)

    def counters() -> dict[bytes, bytes]:
        stored: dict[bytes, bytes] = client.hgetall(keys.dashboard(tenant))  # type: ignore[assignment]
        return {name: value for name, value in stored.items() if value != b"0"}

    def lose_everything() -> None:  # Redis restarted without its data, say
        client.delete(*client.scan_iter(match=f"{keys.prefix}*"))

    def recipients() -> int:
        return len(list(client.scan_iter(match=f"{keys.prefix}recent:*")))

    with _projecting(settings, fresh_database):
        dashboard = counters()
        assert dashboard
        assert recipients() == 41
        # A running projector notices, though no event comes, and rebuilds them from SQL.
        lose_everything()
        eventually(lambda: counters() == dashboard, 30, "the projector to rebuild Redis")
        assert recipients() == 41
        _verified(settings)

    # With no projector running, `verify` sees what is missing and `rebuild` restores it.
    lose_everything()
    result = herald(settings, "projections", "verify", "notifications")
    assert result.returncode == 1
    assert "redis status hashes: DIFFERENT" in result.stdout
    assert "redis dashboard counters: DIFFERENT" in result.stdout

    rebuilt = herald(settings, "projections", "rebuild", "notifications")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    _verified(settings)
    assert counters() == dashboard
    assert recipients() == 41
