"""Sealing what was stored before personal data was sealed: `herald gdpr encrypt-existing`.

Events up to `privacy_backfill.unsealed_through` may hold personal fields, and metadata
client addresses and user agents, in the clear, where destroying a key cannot reach them.
This rewrites each such event in place, sealed as the writer seals today (under the same
stream, version and position), a batch per transaction together with how far it has got,
so a stop at any point loses nothing and a rerun goes on from there. Then it gives the read
model rows projected before lookups went by keyed hash their recipient's hash.

Copies already made of the clear events (Kafka messages still within the topic's retention,
backups) are not rewritten: they age out on their own schedules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.sealer import MARK, SEALED_MARK
from infrastructure.privacy.cipher import ERASED

BATCH = 1000
Progress = Callable[[int, int], None]  # (positions done, positions in all)

_BOUNDS = "SELECT unsealed_through, sealed_through FROM privacy_backfill"
_EVENTS = """
SELECT notification_id, originator_id, topic, state, meta FROM stored_events
WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s
"""
_REWRITE = "UPDATE stored_events SET topic = %s, state = %s, meta = %s WHERE notification_id = %s"
_PROGRESS = "UPDATE privacy_backfill SET sealed_through = %s"
_UNHASHED = """
SELECT notification_id, tenant_id, recipient FROM notification_view
WHERE recipient_hash IS NULL AND recipient <> '' AND recipient <> %s AND notification_id > %s
ORDER BY notification_id LIMIT %s
"""
_HASH = "UPDATE notification_view SET recipient_hash = %s WHERE notification_id = %s"


def _quiet(_done: int, _total: int) -> None:
    return None


@dataclass(frozen=True)
class Sealed:
    events: int  # events rewritten sealed
    through: int  # every event up to this position is sealed
    rows_hashed: int  # read model rows given their recipient's keyed hash


def encrypt_existing(
    database_url: str, codec: EventCodec, *, batch: int = BATCH, progress: Progress = _quiet
) -> Sealed:
    if codec.sealer is None:
        raise ValueError("a codec without a sealer cannot seal")
    rewritten = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        bounds = conn.execute(_BOUNDS).fetchone()
        until, position = (int(bounds[0]), int(bounds[1])) if bounds else (0, 0)
        start = position
        while position < until:
            rows = conn.execute(_EVENTS, (position, until, batch)).fetchall()
            changes = [change for row in rows if (change := _resealed(codec, row)) is not None]
            position = int(rows[-1][0]) if rows else until
            with conn.transaction():
                if changes:
                    with conn.cursor() as cursor:
                        cursor.executemany(_REWRITE, changes)
                conn.execute(_PROGRESS, (position,))
            rewritten += len(changes)
            progress(position - start, until - start)
        hashed = _hash_recipients(conn, codec, batch)
    return Sealed(events=rewritten, through=position, rows_hashed=hashed)


def _resealed(codec: EventCodec, row: Any) -> tuple[str, bytes, bytes | None, int] | None:
    """What to store for the event now; None when nothing of it is in the clear."""
    position, stream_id, topic, state, raw_meta = row
    state, raw_meta = bytes(state), bytes(raw_meta) if raw_meta is not None else None
    event = codec.decode(topic, state)
    new_meta, [(new_topic, new_state)] = codec.encode_all(
        [(stream_id, event)], codec.decode_meta(raw_meta)
    )
    # Sealed bytes differ on every encoding (a fresh nonce), so only clear ones are replaced.
    state_clear = not state.startswith(MARK) and new_state.startswith(MARK)
    meta_clear = SEALED_MARK in (new_meta or b"") and SEALED_MARK not in (raw_meta or b"")
    if not (state_clear or meta_clear):
        return None
    return (
        new_topic if state_clear else topic,
        new_state if state_clear else state,
        new_meta if meta_clear else raw_meta,
        position,
    )


def _hash_recipients(conn: psycopg.Connection[Any], codec: EventCodec, batch: int) -> int:
    hashed, after = 0, "00000000-0000-0000-0000-000000000000"
    while rows := conn.execute(_UNHASHED, (ERASED, after, batch)).fetchall():
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                _HASH,
                [(codec.recipient_hash(tenant, recipient), nid) for nid, tenant, recipient in rows],
            )
        hashed += len(rows)
        after = rows[-1][0]
    return hashed
