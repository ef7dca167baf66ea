"""`herald gdpr encrypt-existing` on a database that holds events stored in the clear: it
seals them in place, survives a kill -9 midway, and until it has finished erasure refuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx
import psycopg

from domain.identity.roles import Role
from domain.notifications import notification as notifications
from domain.notifications.events import NotificationEvent, NotificationRequested
from domain.notifications.values import Channel, Content, Priority
from infrastructure.eventstore import catalog, meta
from infrastructure.eventstore.sealer import MARK
from infrastructure.eventstore.store import EventStore
from infrastructure.migrations import migrate
from infrastructure.settings import Settings
from tests.conftest import on_own_database
from tests.e2e.conftest import AccountFactory, herald

NOW = datetime(2026, 11, 1, tzinfo=UTC)
COUNT = 3000


def _request(index: int) -> list[NotificationEvent]:
    return notifications.request(
        tenant_id="acme",
        channel=Channel.EMAIL,
        recipient=f"person{index}@example.com",
        content=Content(subject="Hello", body=f"private body {index}"),
        priority=Priority.NORMAL,
        send_at=None,
        fallback=(),
        fallback_recipients={},
        metadata={},
        idempotency_key=None,
        requested_by="sender",
        correlation_id=None,
        at=NOW,
    )


def _clear(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM stored_events WHERE substring(state FROM 1 FOR 4) <> %s", (MARK,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_events_stored_in_the_clear_are_sealed_in_place_and_a_kill_loses_nothing(
    stack: Settings, fresh_database: str
) -> None:
    migrate(fresh_database)
    settings = on_own_database(stack, fresh_database)
    clear = EventStore(fresh_database, catalog.codec(), pool_size=1)  # as before sealing
    ids = [uuid.uuid4() for _ in range(COUNT)]
    about = meta.EventMeta(
        actor="u-1", actor_kind="user", tenant="acme", ip="198.51.100.7", user_agent="curl"
    )
    with meta.bound(about):
        for index, stream_id in enumerate(ids):
            clear.append(stream_id, 0, _request(index))
    clear.close()
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        # What migration 0015 records on a database that held clear events.
        conn.execute(
            "UPDATE privacy_backfill"
            " SET unsealed_through = (SELECT max(notification_id) FROM stored_events)"
        )
        assert _clear(conn) == COUNT

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infrastructure.entrypoints.cli",
            "gdpr",
            "encrypt-existing",
            "--batch",
            "20",
        ],
        env={**os.environ, **settings.to_environ()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while _clear(conn) == COUNT:
            assert time.monotonic() < deadline, "nothing was sealed"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        left = _clear(conn)
        assert 0 < left < COUNT, "killed too late to show a resume; use a smaller --batch"

    resumed = herald(settings, "gdpr", "encrypt-existing")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{left} event(s) sealed" in resumed.stdout, resumed.stdout
    again = herald(settings, "gdpr", "encrypt-existing")
    assert "0 event(s) sealed" in again.stdout, again.stdout

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        assert _clear(conn) == 0
        raw = b"".join(
            bytes(state) + bytes(about_ or b"")
            for state, about_ in conn.execute("SELECT state, meta FROM stored_events")
        )
    for secret in (b"person7@example.com", b"private body 7", b"198.51.100.7"):
        assert secret not in raw
    sealed = EventStore(fresh_database, catalog.codec_for(settings), pool_size=1)
    (event,) = [r.event for r in sealed.load(ids[7])]
    sealed.close()
    assert isinstance(event, NotificationRequested)
    assert (event.recipient, event.content.body) == ("person7@example.com", "private body 7")


def test_erasure_refuses_while_events_stored_in_the_clear_remain(
    api_url: str, account: AccountFactory, stack: Settings
) -> None:
    admin = account(Role.ADMIN)
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url.reveal(), autocommit=True) as conn:
        conn.execute("UPDATE privacy_backfill SET unsealed_through = 10, sealed_through = 3")
        try:
            response = httpx.post(
                f"{api_url}/data-pipeline/erasures",
                json={"recipient": "someone@example.com"},
                headers=admin.headers,
            )
        finally:
            conn.execute("UPDATE privacy_backfill SET unsealed_through = 0, sealed_through = 0")
    assert response.status_code == 409, response.text
    assert "herald gdpr encrypt-existing" in response.json()["detail"]
