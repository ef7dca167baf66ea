"""A consistent export under load: 200,000 notifications exported while commands keep
arriving and existing notifications change. The rows are the read model as of the export's
position, the manifest's hash is the bytes', and asking again at that position, once much
has changed, gives the same bytes."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import random
import threading
import uuid
from datetime import UTC, datetime

import psycopg

from domain.events import DomainEvent
from domain.notifications import notification as notifications
from domain.notifications.values import Channel, Content, Priority
from infrastructure.devstack.dev import role_spec
from infrastructure.devstack.supervisor import Supervisor
from infrastructure.eventstore import catalog
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION, stored_position
from infrastructure.eventstore.writer import GroupCommitWriter, StreamAppend
from infrastructure.exports.stream import ExportSpec
from infrastructure.migrations import migrate
from infrastructure.settings import Settings
from projections.exports.exporter import open_export
from tests.conftest import on_own_database
from tests.kafka_helpers import eventually

TOTAL = 200_000
BATCH = 10_000


def _request(tenant: str, index: int) -> StreamAppend:
    events = notifications.request(
        tenant_id=tenant,
        channel=Channel.EMAIL,
        recipient=f"r{index % 1000}@example.com",
        content=Content(subject="s", body="b"),
        priority=Priority.NORMAL,
        send_at=None,
        fallback=(),
        fallback_recipients={},
        metadata={},
        idempotency_key=None,
        requested_by="load",
        correlation_id=None,
        at=datetime.now(UTC),
    )
    return StreamAppend(uuid.uuid4(), 0, events)


def _cancel(stream: uuid.UUID) -> StreamAppend:
    current = notifications.replay(stream, [_requested_event(stream)])
    return StreamAppend(
        stream, 1, notifications.cancel(current, by="load", reason=None, at=datetime.now(UTC))
    )


_REQUESTED: dict[uuid.UUID, DomainEvent] = {}


def _requested_event(stream: uuid.UUID) -> DomainEvent:
    return _REQUESTED[stream]


def _position(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return stored_position(conn, NOTIFICATIONS_PROJECTION)


def _export(database_url: str, tenant: str, position: int | None) -> tuple[int, bytes, str]:
    spec = ExportSpec(kind="notifications", format="csv", tenant=tenant, position=position)
    stream = open_export(database_url, catalog.codec(), spec)
    body = b"".join(stream)
    manifest = stream.manifest()
    assert manifest.bytes == len(body)
    assert manifest.sha256 == hashlib.sha256(body).hexdigest()
    return stream.position, body, manifest.sha256


def test_an_export_of_200_000_under_load_is_the_read_model_at_its_position(
    stack: Settings, fresh_database: str
) -> None:
    migrate(fresh_database)
    settings = on_own_database(stack, fresh_database)
    tenant = f"load-{uuid.uuid4().hex[:6]}"
    created: list[uuid.UUID] = []

    async def fill() -> int:
        writer = GroupCommitWriter(fresh_database, catalog.codec())
        await writer.start()
        try:
            last = 0
            for start in range(0, TOTAL, BATCH):
                appends = [_request(tenant, i) for i in range(start, start + BATCH)]
                for append in appends:
                    _REQUESTED[append.stream_id] = append.events[0]
                    created.append(append.stream_id)
                last = max(await writer.append(appends))
            return last
        finally:
            await writer.stop()

    head = asyncio.run(fill())
    cancelled_at: dict[uuid.UUID, int] = {}
    stop = threading.Event()

    def keep_commanding() -> None:
        """New requests and cancels of existing notifications, until told to stop."""

        async def run() -> None:
            writer = GroupCommitWriter(fresh_database, catalog.codec())
            await writer.start()
            rng = random.Random(7)
            try:
                while not stop.is_set():
                    await writer.append([_request(tenant, rng.randrange(10**6))])
                    victim = rng.choice(created)
                    if victim not in cancelled_at:
                        (position,) = await writer.append([_cancel(victim)])
                        cancelled_at[victim] = position
            finally:
                await writer.stop()

        asyncio.run(run())

    with Supervisor() as supervisor:
        supervisor.start(role_spec("projector", settings))
        eventually(lambda: _position(fresh_database) >= head, 240, "the projection of 200,000")
        load = threading.Thread(target=keep_commanding)
        load.start()
        try:
            eventually(lambda: len(cancelled_at) >= 20, 60, "some changes under way")
            position, body, sha = _export(fresh_database, tenant, None)
            eventually(lambda: len(cancelled_at) >= 200, 60, "more changes after the export")
        finally:
            stop.set()
            load.join()
        eventually(
            lambda: _position(fresh_database) >= max(cancelled_at.values()), 120, "catching up"
        )
        again_position, again, again_sha = _export(fresh_database, tenant, position)

    assert again_position == position
    assert again_sha == sha
    assert again == body

    rows = list(csv.DictReader(io.StringIO(body.decode())))
    with psycopg.connect(fresh_database) as conn:
        created_by_then = {
            str(r[0])
            for r in conn.execute(
                "SELECT notification_id FROM notification_view"
                " WHERE tenant_id = %s AND created_position <= %s",
                (tenant, position),
            ).fetchall()
        }
    assert len(rows) == len(created_by_then) >= TOTAL
    assert {r["id"] for r in rows} == created_by_then
    expected = {
        str(stream): "cancelled" if cancel <= position else "requested"
        for stream, cancel in cancelled_at.items()
    }
    status = {r["id"]: r["status"] for r in rows}
    assert {i: status[i] for i in expected if i in status} == expected
    assert sum(1 for s in expected.values() if s == "requested") > 0  # some were rewound
    assert all(status[i] == "requested" for i in status if uuid.UUID(i) not in cancelled_at)
