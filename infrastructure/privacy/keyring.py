"""Data keys by subject and by id, and each tenant's hashing key, from PostgreSQL, cached.

A data subject is a tenant's recipient (an email address, a phone number, a device token)
or a user account. Its live data key seals its personal fields; destroying the key (the
row keeps its id, its wrapped key goes) erases them everywhere the ciphertext went. A
subject whose key was destroyed gets a new one for whatever comes after.

Subjects are named in the table by a keyed hash (HMAC-SHA256 under the tenant's hashing
key), never by the identifier itself. Live keys are cached for `ttl_s`, so a destroyed key
leaves every process's cache within that time; destroyed keys are remembered as destroyed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool

from infrastructure.privacy.cipher import DataKey
from infrastructure.privacy.master import KEY_BYTES, MasterKeys

KEY_TTL_S = 30.0
HASHES_KEPT = 200_000  # subjects whose keyed hash a process remembers


class Subject(NamedTuple):
    """One data subject of a tenant: kind `recipient` (a normalised address) or `user`."""

    tenant_id: str
    kind: str
    identifier: str


class KeysNotCachedError(LookupError):
    """Sealing needs keys this process has not cached: fetch them (I/O), then seal again."""


# Made keys go in unless the subject has a live key already (another process made one just
# now): the index keeps the first, and `_LIVE` reads it back.
_MAKE = """
INSERT INTO subject_keys (key_id, tenant_id, subject_kind, subject_hash, wrapped, master_key_id)
SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bytea[], %b::bytea[], %b::text[])
ON CONFLICT (tenant_id, subject_kind, subject_hash) WHERE wrapped IS NOT NULL DO NOTHING
RETURNING key_id
"""
_LIVE = """
SELECT s.key_id, s.tenant_id, s.subject_kind, s.subject_hash, s.wrapped, s.master_key_id
FROM subject_keys s JOIN unnest(%b::text[], %b::text[], %b::bytea[]) AS w(tenant, kind, hash)
  ON s.tenant_id = w.tenant AND s.subject_kind = w.kind AND s.subject_hash = w.hash
WHERE s.wrapped IS NOT NULL
"""
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
_ALL_OF_SUBJECT = """
SELECT key_id FROM subject_keys WHERE tenant_id = %s AND subject_kind = %s AND subject_hash = %s
"""


class Keyring:
    def __init__(self, database_url: str, master: MasterKeys, ttl_s: float = KEY_TTL_S) -> None:
        self.master = master
        self._ttl_s = ttl_s
        self._pool = ConnectionPool(
            database_url, min_size=0, max_size=4, open=False, kwargs={"autocommit": True}
        )
        self._opened = False
        self._lock = threading.Lock()
        self._by_id: dict[bytes, tuple[float, DataKey | None]] = {}  # by the id's 16 bytes
        self._hashes: dict[Subject, bytes] = {}
        self._by_subject: dict[tuple[str, str, bytes], tuple[float, DataKey]] = {}
        self._hash_keys: dict[str, bytes] = {}

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
            digest = hmac.new(key, message, hashlib.sha256).digest()
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

    # Data keys

    def cached_for(self, subject: Subject) -> DataKey | None:
        """The subject's live key if this process has it fresh; no I/O."""
        found = self._by_subject.get(self._subject_key(subject))
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def keys_for(self, subjects: Iterable[Subject]) -> dict[Subject, DataKey]:
        """Each subject's live key, made for those that have none; one round trip for all
        that this process has not cached."""
        wanted = {subject: self._subject_key(subject) for subject in subjects}
        found: dict[Subject, DataKey] = {}
        # A key about to leave the cache is read again, so that a caller sealing right after
        # this finds every key it asked for still cached.
        now = time.monotonic() + min(1.0, self._ttl_s / 4)
        missing = []
        for subject, key in wanted.items():
            cached = self._by_subject.get(key)
            if cached is not None and cached[0] >= now:
                found[subject] = cached[1]
            else:
                missing.append(subject)
        if missing:
            found.update(self._fetch_or_make(missing, wanted))
        return found

    def _fetch_or_make(
        self, subjects: list[Subject], names: dict[Subject, tuple[str, str, bytes]]
    ) -> dict[Subject, DataKey]:
        """The live keys of `subjects`, made for those without: a lookup, and for subjects
        never seen before an insert (and, for any another process made just then, a second
        lookup). A key made here is used as made, not unwrapped again."""
        made: dict[Subject, DataKey] = {}
        with self._connection() as conn:
            rows = self._live(conn, subjects, names)
            if len(rows) < len(subjects):
                found = {(t, k, bytes(h)) for _, t, k, h, _, _ in rows}
                new = [s for s in subjects if names[s] not in found]
                ids = [uuid.uuid4() for _ in new]
                raws = [os.urandom(KEY_BYTES) for _ in new]
                wraps = [
                    self.master.wrap(raw, key_id.bytes)
                    for raw, key_id in zip(raws, ids, strict=True)
                ]
                inserted = {
                    row[0]
                    for row in conn.execute(
                        _MAKE,
                        (
                            ids,
                            [s.tenant_id for s in new],
                            [s.kind for s in new],
                            [names[s][2] for s in new],
                            [wrapped for _, wrapped in wraps],
                            [master_id for master_id, _ in wraps],
                        ),
                    ).fetchall()
                }
                for subject, key_id, raw in zip(new, ids, raws, strict=True):
                    if key_id in inserted:
                        made[subject] = DataKey(key_id, AESGCM(raw))
                raced = [s for s in new if s not in made]
                if raced:
                    rows += self._live(conn, raced, names)
        by_name = {
            (tenant, kind, bytes(digest)): (key_id, bytes(wrapped), master_id)
            for key_id, tenant, kind, digest, wrapped, master_id in rows
        }
        expires = time.monotonic() + self._ttl_s
        found_keys = {}
        for subject in subjects:
            key = made.get(subject)
            if key is None:
                key_id, wrapped, master_id = by_name[names[subject]]
                unwrapped = self.master.unwrap(master_id, wrapped, key_id.bytes)
                key = DataKey(key_id, AESGCM(unwrapped))
            self._by_subject[names[subject]] = (expires, key)
            self._by_id[key.raw_id] = (expires, key)
            found_keys[subject] = key
        return found_keys

    @staticmethod
    def _live(
        conn: Any, subjects: list[Subject], names: dict[Subject, tuple[str, str, bytes]]
    ) -> list[tuple[Any, ...]]:
        params = (
            [s.tenant_id for s in subjects],
            [s.kind for s in subjects],
            [names[s][2] for s in subjects],
        )
        return list(conn.execute(_LIVE, params, binary=True).fetchall())

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
        return destroyed

    def _subject_key(self, subject: Subject) -> tuple[str, str, bytes]:
        return (subject.tenant_id, subject.kind, self.subject_hash(subject))
