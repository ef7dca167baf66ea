"""Data keys by subject and by id, and each tenant's hashing key, from PostgreSQL, cached.

A data subject is a tenant's recipient (an email address, a phone number, a device token)
or a user account. A live data key seals its personal fields; destroying its keys (each row
keeps its id, its wrapped key goes) erases them everywhere the ciphertext went. A subject
whose keys were destroyed gets a new one for whatever comes after.

Sealing does no I/O on the way: a process that has no key for a subject makes one (random,
wrapped by the master key) and the row goes into the store in the same transaction as the
first events it seals (`unstored_rows`, `mark_stored`), so no event names a key that is not
stored. Each process makes its own: a subject has a live key per process that sealed for it,
and erasure destroys them all.

Subjects are named in the table by a keyed hash (HMAC-SHA256 under the tenant's hashing
key), never by the identifier itself. Keys are cached for `ttl_s`: a process checks a cached
key is still live once per `ttl_s`, so a destroyed key leaves every process's cache within
that time; destroyed keys are remembered as destroyed.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool

from infrastructure.privacy.cipher import DataKey
from infrastructure.privacy.made_keys import KEY_COLUMNS, KEY_COPY_TYPES, KeyRow, MadeKeys
from infrastructure.privacy.master import KEY_BYTES, MasterKeys

KEY_TTL_S = 30.0
# How long a subject's key stays cached past its check (KEY_TTL_S): a subject seen again
# within it keeps its key, once `refresh` finds it still live; one seen later gets a new key.
KEY_KEPT_AFTER_CHECK_S = 300.0
HASHES_KEPT = 10_000  # subjects whose keyed hash a process remembers (it costs 1 us to redo)
KEYS_KEPT = 50_000  # data keys a process keeps cached at most, by subject and by id


class Subject(NamedTuple):
    """One data subject of a tenant: kind `recipient` (a normalised address) or `user`."""

    tenant_id: str
    kind: str
    identifier: str


class KeysNotCachedError(LookupError):
    """Sealing needs what this process has not cached (a tenant's hashing key) or must check
    (a key cached for `ttl_s`): `Keyring.refresh` (I/O), then seal again."""


# A key stored already (by another process's transaction, say) stays as it is.
_STORE = """
INSERT INTO subject_keys (key_id, tenant_id, subject_kind, subject_hash, wrapped, master_key_id)
SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bytea[], %b::bytea[], %b::text[])
ON CONFLICT (key_id) DO NOTHING
"""
_COPY = f"COPY subject_keys ({KEY_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_STILL_LIVE = "SELECT key_id FROM subject_keys WHERE key_id = ANY(%s) AND wrapped IS NOT NULL"
_BY_ID = "SELECT key_id, wrapped, master_key_id FROM subject_keys WHERE key_id = ANY(%b)"
_HASH_KEY_CREATE = """
INSERT INTO tenant_hash_keys (tenant_id, wrapped, master_key_id) VALUES (%s, %s, %s)
ON CONFLICT (tenant_id) DO NOTHING
"""
_HASH_KEY = "SELECT wrapped, master_key_id FROM tenant_hash_keys WHERE tenant_id = %s"
_DESTROY = """
UPDATE subject_keys SET wrapped = NULL, master_key_id = NULL, destroyed_at = now()
WHERE tenant_id = %s AND subject_kind = %s AND subject_hash = %s AND wrapped IS NOT NULL
RETURNING key_id
"""
_DESTROY_MADE_BY = """
UPDATE subject_keys SET wrapped = NULL, master_key_id = NULL, destroyed_at = now()
WHERE tenant_id = %s AND subject_kind = %s AND subject_hash = %s AND wrapped IS NOT NULL
  AND created_at <= %s
RETURNING key_id
"""
_ALL_OF_SUBJECT = """
SELECT key_id FROM subject_keys WHERE tenant_id = %s AND subject_kind = %s AND subject_hash = %s
"""


POOL_TIMEOUT_S = 1.0


class Keyring:
    def __init__(self, database_url: str, master: MasterKeys, ttl_s: float = KEY_TTL_S) -> None:
        self.master = master
        self._ttl_s = ttl_s
        # A short wait for a connection: with the database down, the pool would otherwise
        # hold a command for its default 30 s; past this the command answers 503 at once.
        self._pool = ConnectionPool(
            database_url,
            min_size=0,
            max_size=4,
            open=False,
            kwargs={"autocommit": True},
            timeout=POOL_TIMEOUT_S,
            # Keys are read rarely, so a pooled connection may be one the server has closed
            # since (a restart): check it on the way out rather than fail the caller.
            check=ConnectionPool.check_connection,
        )
        self._opened = False
        self._lock = threading.Lock()
        self._by_id: dict[bytes, tuple[float, DataKey | None]] = {}  # by the id's 16 bytes
        self._hashes: dict[Subject, bytes] = {}
        self._by_subject: dict[tuple[str, str, bytes], tuple[float, DataKey]] = {}
        self._hash_keys: dict[str, bytes] = {}
        self._next_sweep = time.monotonic() + ttl_s
        self.made = MadeKeys()

    def close(self) -> None:
        if self._opened:
            self._pool.close()

    def _connection(self) -> Any:
        with self._lock:
            if not self._opened:
                self._pool.open()
                self._opened = True
        return self._pool.connection()

    # Keyed hashes

    def subject_hash(self, subject: Subject) -> bytes:
        """HMAC-SHA256 of the subject's kind and identifier under its tenant's hashing key."""
        digest = self._hashes.get(subject)
        if digest is None:
            key = self._hash_keys.get(subject.tenant_id) or self._hash_key(subject.tenant_id)
            message = f"{subject.kind}\x00{subject.identifier}".encode()
            digest = hmac.digest(key, message, hashlib.sha256)
            if len(self._hashes) >= HASHES_KEPT:
                self._hashes.clear()
            self._hashes[subject] = digest
        return digest

    def _hash_key(self, tenant: str) -> bytes:
        context = b"hash key\x00" + tenant.encode()
        with self._connection() as conn:
            row = conn.execute(_HASH_KEY, (tenant,)).fetchone()
            if row is None:
                master_id, wrapped = self.master.wrap(os.urandom(KEY_BYTES), context)
                conn.execute(_HASH_KEY_CREATE, (tenant, wrapped, master_id))
                row = conn.execute(_HASH_KEY, (tenant,)).fetchone()
        assert row is not None  # noqa: S101 - written just now, or by someone first
        key = self.master.unwrap(row[1], bytes(row[0]), context)
        self._hash_keys[tenant] = key
        return key

    # Data keys, for sealing

    def key_to_seal(self, subject: Subject, unstored: set[bytes]) -> DataKey:
        """The key to seal `subject`'s fields under now, with no I/O: its cached key, or one
        made here, whose id is added to `unstored` until a commit stores its row.
        KeysNotCachedError when the tenant's hashing key is not cached or the cached key is
        due to be checked: `refresh`, then again."""
        hash_key = self._hash_keys.get(subject.tenant_id)
        if hash_key is None:
            raise KeysNotCachedError(subject.tenant_id)
        digest = self._hashes.get(subject)
        if digest is None:
            digest = self.subject_hash(subject)
        name = (subject.tenant_id, subject.kind, digest)
        cached = self._by_subject.get(name)
        if cached is None:
            key = self._make(name)
        elif cached[0] < time.monotonic():
            raise KeysNotCachedError(subject.kind)
        else:
            key = cached[1]
        if key.raw_id in self.made:
            unstored.add(key.raw_id)
        return key

    def _make(self, name: tuple[str, str, bytes]) -> DataKey:
        secret = os.urandom(KEY_BYTES + 16)
        raw_id = _random_uuid(secret[KEY_BYTES:])
        master_id, wrapped = self.master.wrap(secret[:KEY_BYTES], raw_id)
        key = DataKey(raw_id, AESGCM(secret[:KEY_BYTES]))
        self.made.add(KeyRow(raw_id, *name, wrapped, master_id))
        expires = time.monotonic() + self._ttl_s
        self._by_subject[name] = (expires, key)
        self._by_id[key.raw_id] = (expires, key)
        self._keep_bounded()
        return key

    def _keep_bounded(self) -> None:
        """Keep the caches to what is in use: every `ttl_s`, keys by id past their check go,
        and keys by subject KEY_KEPT_AFTER_CHECK_S later; at KEYS_KEPT, every expired entry,
        then the oldest half. A key dropped is read again, or for sealing made again, when
        next needed; a key known as destroyed reads as destroyed again from the table."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self._ttl_s
            _drop_expired(self._by_id, now)
            _drop_expired(self._by_subject, now - KEY_KEPT_AFTER_CHECK_S)
        if len(self._by_id) > KEYS_KEPT or len(self._by_subject) > KEYS_KEPT:
            _halve(self._by_id, now)
            _halve(self._by_subject, now)

    def refresh(self, subjects: Iterable[Subject]) -> None:
        """Make sealing for `subjects` need no I/O (for a while): fetch tenants' hashing keys
        not cached, and check that keys cached for about `ttl_s` are still live, in one round
        trip. A key destroyed meanwhile leaves the cache; the next seal makes a new one."""
        # Keys about to expire are checked too, so that sealing right after finds them fresh.
        soon = time.monotonic() + min(1.0, self._ttl_s / 4)
        due: dict[bytes, tuple[tuple[str, str, bytes], DataKey]] = {}
        for subject in subjects:
            name = self._subject_key(subject)
            cached = self._by_subject.get(name)
            if cached is not None and cached[0] < soon:
                due[cached[1].raw_id] = (name, cached[1])
        if not due:
            return
        with self._connection() as conn:
            ids = [UUID(bytes=raw_id) for raw_id in due]
            live = {row[0].bytes for row in conn.execute(_STILL_LIVE, (ids,))}
        expires = time.monotonic() + self._ttl_s
        for raw_id, (name, key) in due.items():
            if raw_id in live or raw_id in self.made:
                self._by_subject[name] = (expires, key)
                self._by_id[raw_id] = (expires, key)
            else:
                self._by_subject.pop(name, None)

    def store_now(self, raw_ids: Iterable[bytes]) -> None:
        """Store those of the keys not stored yet, in a transaction of their own: for
        callers that write their events through a connection of their own."""
        wanted = set(raw_ids)
        while True:
            rows, busy = self.made.claim(wanted)
            stored = False
            try:
                if rows:
                    with self._connection() as conn:
                        store_rows(conn, rows)
                stored = True
            finally:
                self.made.settle(rows, stored)
            if not busy:
                return
            self.made.wait(0.05)  # another transaction is writing some of them

    # Data keys, for opening

    def all_cached(self, raw_ids: Iterable[bytes]) -> bool:
        """Whether this process knows every one of the keys (by their ids' 16 bytes) fresh,
        or as destroyed."""
        now = time.monotonic()
        for raw_id in raw_ids:
            cached = self._by_id.get(raw_id)
            if cached is None or (cached[1] is not None and cached[0] < now):
                return False
        return True

    def keys_by_id(self, raw_ids: Iterable[bytes]) -> dict[bytes, DataKey | None]:
        """Each key by its id's 16 bytes; None for a destroyed key (or one that never was)."""
        now = time.monotonic()
        found: dict[bytes, DataKey | None] = {}
        missing = []
        for raw_id in set(raw_ids):
            cached = self._by_id.get(raw_id)
            if cached is not None and (cached[1] is None or cached[0] >= now):
                found[raw_id] = cached[1]
            else:
                missing.append(raw_id)
        if missing:
            with self._connection() as conn:
                rows = conn.execute(_BY_ID, ([UUID(bytes=r) for r in missing],)).fetchall()
            expires = time.monotonic() + self._ttl_s
            known = {row[0].bytes: row for row in rows}
            for raw_id in missing:
                row = known.get(raw_id)
                key = None
                if row is not None and row[1] is not None:
                    key_id = row[0]
                    key = DataKey(key_id, AESGCM(self.master.unwrap(row[2], bytes(row[1]), raw_id)))
                self._by_id[raw_id] = (expires, key)
                found[raw_id] = key
        self._keep_bounded()
        return found

    def destroy(self, conn: psycopg.Connection[Any], subject: Subject) -> list[UUID]:
        """Destroy the subject's live key, in the caller's transaction; returns its id, if
        it had one (keys destroyed earlier stay destroyed)."""
        return self.destroy_hashed(conn, self._subject_key(subject))

    def destroy_hashed(
        self, conn: psycopg.Connection[Any], name: tuple[str, str, bytes]
    ) -> list[UUID]:
        """As `destroy`, for a subject known by (tenant, kind, keyed hash) only."""
        destroyed = [row[0] for row in conn.execute(_DESTROY, name)]
        for (key_id,) in conn.execute(_ALL_OF_SUBJECT, name):
            self._by_id[key_id.bytes] = (0.0, None)
        self._by_subject.pop(name, None)
        # A key made here and not stored yet is forgotten: events sealed under it read as
        # erased, as they would under a stored key destroyed now.
        for raw_id in self.made.forget(*name):
            self._by_id[raw_id] = (0.0, None)
        return destroyed

    def _subject_key(self, subject: Subject) -> tuple[str, str, bytes]:
        return (subject.tenant_id, subject.kind, self.subject_hash(subject))


def destroy_made_by(
    conn: psycopg.Connection[Any], name: tuple[str, str, bytes], until: datetime
) -> list[UUID]:
    """Destroy the live keys of the subject named (tenant, kind, keyed hash) that were made
    by `until`, in the caller's transaction; returns their ids. For a process that caches
    no keys (a restore): keys made later seal what came after, and stay."""
    return [row[0] for row in conn.execute(_DESTROY_MADE_BY, (*name, until))]


def _halve(cache: dict[Any, tuple[float, Any]], now: float) -> None:
    """Expired entries, then the oldest, until half of KEYS_KEPT is left."""
    _drop_expired(cache, now)
    if len(cache) > KEYS_KEPT // 2:
        for name in list(itertools.islice(cache, len(cache) - KEYS_KEPT // 2)):
            cache.pop(name, None)


def _drop_expired(cache: dict[Any, tuple[float, Any]], before: float) -> None:
    # A copy of the items, taken at once: another thread may add keys meanwhile.
    for name, (expires, _) in list(cache.items()):
        if expires < before:
            cache.pop(name, None)


def _random_uuid(random: bytes) -> bytes:
    """A version 4 UUID's 16 bytes from 16 random ones (uuid.uuid4 is slower by microseconds)."""
    marked = bytearray(random)
    marked[6] = (marked[6] & 0x0F) | 0x40
    marked[8] = (marked[8] & 0x3F) | 0x80
    return bytes(marked)


def store_rows(conn: psycopg.Connection[Any], rows: Sequence[KeyRow]) -> None:
    """Insert made keys, in the caller's transaction."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    columns[0] = [UUID(bytes=raw_id) for raw_id in columns[0]]
    conn.execute(_STORE, columns)


async def copy_rows(conn: psycopg.AsyncConnection[Any], rows: Sequence[KeyRow]) -> None:
    """Insert made keys claimed by the caller, in its transaction on an async connection:
    one binary COPY (a claimed row is written by no one else)."""
    async with conn.cursor() as cursor, cursor.copy(_COPY) as copy:
        copy.set_types(KEY_COPY_TYPES)
        for row in rows:
            await copy.write_row(row)
