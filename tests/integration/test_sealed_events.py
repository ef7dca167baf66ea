"""Personal fields are sealed in what PostgreSQL stores, events and metadata alike, and open
for the code that reads them, until their subject's key is destroyed; keys survive a master
key rotation, and a wrong master key opens nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from domain.identity.user import register
from domain.notifications import notification as notifications
from domain.notifications.events import NotificationRequested
from domain.notifications.values import Channel, Content, Priority
from infrastructure.eventstore import catalog, meta
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.sealer import Sealer
from infrastructure.eventstore.store import EventStore
from infrastructure.eventstore.writer import GroupCommitWriter, StreamAppend
from infrastructure.migrations import migrate
from infrastructure.privacy.cipher import ERASED
from infrastructure.privacy.keyring import Keyring, KeysNotCachedError, Subject
from infrastructure.privacy.master import (
    MasterKeyError,
    generate_master_key,
    master_keys,
)

NOW = datetime(2026, 11, 29, tzinfo=UTC)
MASTER = generate_master_key()


@pytest.fixture
def database(fresh_database: str) -> str:
    migrate(fresh_database)
    return fresh_database


@pytest.fixture
def keyring(database: str) -> Iterator[Keyring]:
    ring = Keyring(database, master_keys(MASTER, None))
    yield ring
    ring.close()


def _sealed_codec(keyring: Keyring) -> EventCodec:
    return catalog.codec(Sealer(keyring))


def _request(tenant: str, recipient: str) -> NotificationRequested:
    (event,) = notifications.request(
        tenant_id=tenant,
        channel=Channel.EMAIL,
        recipient=recipient,
        content=Content(subject="Your parcel", body="Parcel 4471 waits at the depot"),
        priority=Priority.NORMAL,
        send_at=None,
        fallback=(Channel.SMS,),
        fallback_recipients={Channel.SMS: "+14155550123"},
        metadata={"order": "A-998877"},
        idempotency_key=None,
        requested_by="sender",
        correlation_id=None,
        at=NOW,
    )
    assert isinstance(event, NotificationRequested)
    return event


def _raw(database: str) -> bytes:
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT state, meta FROM stored_events").fetchall()
    return b"".join(bytes(state) + bytes(about or b"") for state, about in rows)


PERSONAL = [b"ada@example.com", b"+14155550123", b"Parcel 4471", b"A-998877", b"198.51.100.23"]


def test_what_is_stored_is_sealed_and_what_is_read_is_plain(
    database: str, keyring: Keyring
) -> None:
    codec = _sealed_codec(keyring)
    store = EventStore(database, codec, pool_size=1)
    stream, user = uuid.uuid4(), uuid.uuid4()
    try:
        with meta.request(ip="198.51.100.23", user_agent="probe/2", request_id="r-1"):
            meta.set_actor(str(user), "user", ("admin",), "acme")
            store.append(stream, 0, [_request("acme", "ada@example.com")])

        async def through_the_writer() -> None:
            writer = GroupCommitWriter(database, codec)
            await writer.start()
            try:
                with meta.request(ip="198.51.100.23", user_agent="probe/2", request_id="r-2"):
                    meta.set_actor(str(user), "user", ("admin",), "acme")
                    event = _request("acme", "ada@example.com")
                    await writer.append([StreamAppend(uuid.uuid4(), 0, [event])])
            finally:
                await writer.stop()

        asyncio.run(through_the_writer())
        stored = _raw(database)
        for value in PERSONAL:
            assert value not in stored, value
        (recorded,) = store.load(stream)
        assert isinstance(recorded.event, NotificationRequested)
        assert recorded.event == _request("acme", "ada@example.com")
        with psycopg.connect(database) as conn:
            raw_meta = conn.execute(
                "SELECT meta FROM stored_events WHERE originator_id = %s", (stream,)
            ).fetchone()
        assert raw_meta is not None
        opened = codec.decode_meta(bytes(raw_meta[0]))
        assert opened is not None
        assert (opened.ip, opened.user_agent, opened.actor) == (
            "198.51.100.23",
            "probe/2",
            str(user),
        )
        # Without the keys, the fields are ciphertext.
        plain = catalog.codec().decode_many([("NotificationRequested@1", _state(database, stream))])
        assert isinstance(plain[0], NotificationRequested)
        assert plain[0].recipient != "ada@example.com"
    finally:
        store.close()


def _state(database: str, stream: uuid.UUID) -> bytes:
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT state FROM stored_events WHERE originator_id = %s", (stream,)
        ).fetchone()
    assert row is not None
    return bytes(row[0])


def test_destroying_a_subjects_key_erases_it_and_no_one_else(
    database: str, keyring: Keyring
) -> None:
    store = EventStore(database, _sealed_codec(keyring), pool_size=1)
    ada, bob = uuid.uuid4(), uuid.uuid4()
    try:
        store.append(ada, 0, [_request("acme", "ada@example.com")])
        store.append(bob, 0, [_request("acme", "bob@example.com")])
        with psycopg.connect(database) as conn, conn.transaction():
            destroyed = keyring.destroy(conn, Subject("acme", "recipient", "ada@example.com"))
        assert len(destroyed) == 1
        for reader in (keyring, Keyring(database, master_keys(MASTER, None))):
            fresh = EventStore(database, _sealed_codec(reader), pool_size=1)
            (gone,) = fresh.load(ada)
            (kept,) = fresh.load(bob)
            fresh.close()
            assert isinstance(gone.event, NotificationRequested)
            assert isinstance(kept.event, NotificationRequested)
            assert (gone.event.recipient, gone.event.content.body) == (ERASED, ERASED)
            # The fallback address is a subject of its own, and was not erased.
            assert gone.event.fallback_recipients == {Channel.SMS: "+14155550123"}
            assert kept.event.recipient == "bob@example.com"
        # What comes for the subject afterwards gets a new key.
        later = uuid.uuid4()
        store.append(later, 0, [_request("acme", "ada@example.com")])
        (again,) = store.load(later)
        assert isinstance(again.event, NotificationRequested)
        assert again.event.recipient == "ada@example.com"
    finally:
        store.close()


def test_keys_open_after_a_rotation_and_not_under_a_wrong_master_key(
    database: str, keyring: Keyring
) -> None:
    store = EventStore(database, _sealed_codec(keyring), pool_size=1)
    stream = uuid.uuid4()
    store.append(stream, 0, [_request("acme", "ada@example.com")])
    store.close()
    newer = generate_master_key()
    rotated = EventStore(
        database, _sealed_codec(Keyring(database, master_keys(newer, MASTER))), pool_size=1
    )
    (recorded,) = rotated.load(stream)
    rotated.close()
    assert isinstance(recorded.event, NotificationRequested)
    assert recorded.event.recipient == "ada@example.com"
    wrong = EventStore(database, _sealed_codec(Keyring(database, master_keys(newer, None))))
    with pytest.raises(MasterKeyError):
        wrong.load(stream)
    wrong.close()


def test_events_stored_before_sealing_still_read(database: str, keyring: Keyring) -> None:
    plain = EventStore(database, catalog.codec(), pool_size=1)
    user = uuid.uuid4()
    registered = register(
        tenant_id="acme", email="old@example.com", password_hash="h", roles=(), at=NOW
    )
    plain.append(user, 0, [registered])
    plain.close()
    sealed = EventStore(database, _sealed_codec(keyring), pool_size=1)
    (recorded,) = sealed.load(user)
    sealed.close()
    assert getattr(recorded.event, "email", None) == "old@example.com"


def _keys_of(database: str, tenant: str) -> list[tuple[bool]]:
    with psycopg.connect(database) as conn:
        return conn.execute(
            "SELECT wrapped IS NOT NULL FROM subject_keys WHERE tenant_id = %s", (tenant,)
        ).fetchall()


def test_each_process_makes_its_own_key_and_erasure_destroys_them_all(database: str) -> None:
    """Two api processes seal for one recipient with no lookup: each makes a key, stored with
    its first events. Destroying the subject's keys erases what both sealed."""
    rings = [Keyring(database, master_keys(MASTER, None)) for _ in range(2)]
    streams = [uuid.uuid4() for _ in rings]

    async def write() -> None:
        for ring, stream in zip(rings, streams, strict=True):
            writer = GroupCommitWriter(database, _sealed_codec(ring))
            await writer.start()
            try:
                await writer.append([StreamAppend(stream, 0, [_request("acme", "ada@x.org")])])
            finally:
                await writer.stop()

    try:
        asyncio.run(write())
        # ada's key from each process, and the fallback number's from each.
        assert _keys_of(database, "acme") == [(True,)] * 4
        reader = Keyring(database, master_keys(MASTER, None))
        store = EventStore(database, _sealed_codec(reader), pool_size=1)
        assert [store.load(s)[0].event.recipient for s in streams] == ["ada@x.org"] * 2  # type: ignore[attr-defined]
        with psycopg.connect(database) as conn, conn.transaction():
            destroyed = reader.destroy(conn, Subject("acme", "recipient", "ada@x.org"))
        assert len(destroyed) == 2
        assert [store.load(s)[0].event.recipient for s in streams] == [ERASED] * 2  # type: ignore[attr-defined]
        store.close()
        reader.close()
    finally:
        for ring in rings:
            ring.close()


def test_a_key_is_stored_only_with_events_sealed_under_it(database: str, keyring: Keyring) -> None:
    """A unit refused (its stream moved on) leaves no key behind; the next unit sealed under
    the same key stores it, and what it sealed opens for a process that never saw the key."""
    stream = uuid.uuid4()

    async def write() -> None:
        writer = GroupCommitWriter(database, _sealed_codec(keyring))
        await writer.start()
        try:
            await writer.append([StreamAppend(stream, 0, [_request("acme", "bob@example.com")])])
            with pytest.raises(Exception, match="moved on"):
                # Version 1 is taken: refused, with ada's new key (and its fallback's).
                await writer.append([StreamAppend(stream, 0, [_request("acme", "ada@x.org")])])
            assert len(_keys_of(database, "acme")) == 2  # bob's and the fallback number's
            await writer.append([StreamAppend(stream, 1, [_request("acme", "ada@x.org")])])
        finally:
            await writer.stop()

    asyncio.run(write())
    assert len(_keys_of(database, "acme")) == 3
    reader = Keyring(database, master_keys(MASTER, None))
    store = EventStore(database, _sealed_codec(reader), pool_size=1)
    try:
        recipients = [r.event.recipient for r in store.load(stream)]  # type: ignore[attr-defined]
    finally:
        store.close()
        reader.close()
    assert recipients == ["bob@example.com", "ada@x.org"]


def test_a_large_commit_stores_its_keys_by_copy(database: str, keyring: Keyring) -> None:
    """Past one statement's worth of rows the writer copies events and keys alike: each of
    300 new recipients' events opens for a process that never saw their keys."""
    streams = [uuid.uuid4() for _ in range(300)]

    async def write() -> None:
        writer = GroupCommitWriter(database, _sealed_codec(keyring))
        await writer.start()
        try:
            await writer.append(
                [
                    StreamAppend(s, 0, [_request("acme", f"r{i}@x.org")])
                    for i, s in enumerate(streams)
                ]
            )
        finally:
            await writer.stop()

    asyncio.run(write())
    reader = Keyring(database, master_keys(MASTER, None))
    store = EventStore(database, _sealed_codec(reader), pool_size=1)
    try:
        recipients = [store.load(s)[0].event.recipient for s in streams]  # type: ignore[attr-defined]
    finally:
        store.close()
        reader.close()
    assert recipients == [f"r{i}@x.org" for i in range(300)]
    assert len(_keys_of(database, "acme")) == 301  # and the one fallback number's


def test_a_process_keeps_a_bounded_number_of_keys(
    database: str, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sealing for ever more recipients does not grow the key caches without end."""
    monkeypatch.setattr("infrastructure.privacy.keyring.KEYS_KEPT", 100)
    subjects = [Subject("acme", "recipient", f"r{i}@x.org") for i in range(1000)]
    keyring.refresh(subjects[:1])  # the tenant's hashing key
    made: set[bytes] = set()
    for subject in subjects:
        keyring.key_to_seal(subject, made)
    assert len(made) == 1000
    assert len(keyring._by_id) <= 100
    assert len(keyring._by_subject) <= 100


def test_keys_no_longer_in_use_leave_the_caches(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a steady stream of new recipients a process caches the keys in use, not every key
    it has seen: memory stays level. A subject seen again soon keeps its key."""
    monkeypatch.setattr("infrastructure.privacy.keyring.KEY_KEPT_AFTER_CHECK_S", 1.0)
    ring = Keyring(database, master_keys(MASTER, None), ttl_s=0.2)
    try:
        early = [Subject("acme", "recipient", f"early{i}@x.org") for i in range(200)]
        ring.refresh(early[:1])  # the tenant's hashing key
        made: set[bytes] = set()
        first = ring.key_to_seal(early[0], made)
        for subject in early[1:]:
            ring.key_to_seal(subject, made)
        ring.store_now(made)
        assert len(ring.keys_by_id(made)) == 200
        time.sleep(0.4)  # past the check, within the time kept after it
        with pytest.raises(KeysNotCachedError):
            ring.key_to_seal(early[0], set())
        ring.refresh(early[:1])
        assert ring.key_to_seal(early[0], set()) is first
        time.sleep(1.5)  # past both
        ring.key_to_seal(Subject("acme", "recipient", "late@x.org"), set())
        assert len(ring._by_subject) == 1
        assert len(ring._by_id) == 1
    finally:
        ring.close()


def test_units_sealed_under_one_new_key_commit_apart_when_one_is_refused(
    database: str, keyring: Keyring
) -> None:
    """Three commands for one new recipient share a commit and its new key; one is refused
    (its stream moved on), so the rest are written one by one: the first writes the key,
    the second goes with it, and nothing waits on the key for ever."""
    taken, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async def write() -> list[object]:
        writer = GroupCommitWriter(database, _sealed_codec(keyring), linger_s=0.05)
        await writer.start()
        try:
            await writer.append([StreamAppend(taken, 0, [_request("acme", "bob@example.com")])])
            return await asyncio.wait_for(
                asyncio.gather(
                    *(
                        writer.append([StreamAppend(s, 0, [_request("acme", "carol@x.org")])])
                        for s in (first, second, taken)
                    ),
                    return_exceptions=True,
                ),
                20,
            )
        finally:
            await writer.stop()

    one, two, refused = asyncio.run(write())
    assert isinstance(one, list)
    assert isinstance(two, list)
    assert isinstance(refused, Exception)
    assert "moved on" in str(refused)
    reader = Keyring(database, master_keys(MASTER, None))
    store = EventStore(database, _sealed_codec(reader), pool_size=1)
    try:
        found = [store.load(s)[0].event.recipient for s in (first, second)]  # type: ignore[attr-defined]
    finally:
        store.close()
        reader.close()
    assert found == ["carol@x.org"] * 2
