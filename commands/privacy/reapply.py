"""Erasures again, after the database came back from a backup: the backup still holds the
keys of every subject erased since it was taken, and its `erasures` table does not know of
those erasures. The record kept outside the database does (`ErasureRecord`).

For each recorded erasure the restored database has not finished, the subject's keys made
by the time of the erasure are destroyed again at once (an account is erased first, as the
eraser's settle step does), its audit-log fields scrubbed, and
an erasure the database never heard of is asked for again (same id, same request time), so
that a scheduler carries it out to its receipt as it would any other. One already under way
in the backup is left to go on from its step.

A recipient's notifications are found by keyed hash in the read model, which a rebuild
cannot fill for events whose key is gone. So they are looked up first, while the restored
read model still has them, and checkpointed as the erasure's `found`, which its settle step
starts from.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from commands.privacy.audit_scrub import scrub_audit_log
from commands.privacy.eraser import erase_user
from commands.privacy.job import load
from commands.privacy.requests import record_request
from domain.privacy import SubjectErasureRequested, SubjectKind
from infrastructure.eventstore.store import EventStore
from infrastructure.privacy.erasure_record import RecordedErasure
from infrastructure.privacy.keyring import Keyring, destroy_made_by

REQUESTED_BY = "restore"  # who asks again for an erasure the restored database lost
_STATUS = "SELECT status, progress FROM erasures WHERE erasure_id = %s"
_OF_RECIPIENT = """
SELECT notification_id FROM notification_view WHERE tenant_id = %s AND recipient_hash = %s
"""
_SENT_BY = """
SELECT provider, provider_message_id FROM notification_attempts
WHERE notification_id = ANY(%s) AND provider_message_id IS NOT NULL
"""
_FOUND = "UPDATE erasures SET progress = progress || %s WHERE erasure_id = %s"


@dataclass(frozen=True)
class Reapplied:
    recorded: int  # erasures in the record
    reapplied: int  # of those, the ones the restored database had not finished
    keys: int  # keys destroyed again
    requested: int  # erasures asked for again, for a scheduler to carry out
    audit_entries: int  # audit-log entries scrubbed


def reapply_erasures(
    conn: psycopg.Connection[Any],
    recorded: Sequence[RecordedErasure],
    *,
    store: EventStore,
    keyring: Keyring,
    progress: Callable[[int, int], None] = lambda _done, _total: None,
) -> Reapplied:
    reapplied = keys = requested = entries = 0
    for done, erasure in enumerate(recorded, start=1):
        row = conn.execute(_STATUS, (erasure.erasure_id,)).fetchone()
        if row is not None and row[0] == "done":
            progress(done, len(recorded))
            continue  # finished before the backup: its keys are destroyed in it already
        reapplied += 1
        found = _found(conn, erasure, (row[1] or {}) if row is not None else {})
        if erasure.subject_kind == SubjectKind.USER.value:
            # Its row in `users` holds its email in the clear, and lets it log in: at once,
            # not when a scheduler gets to it.
            erase_user(store, erasure.tenant_id, uuid.UUID(erasure.subject_ref))
        with conn.transaction():
            keys += len(destroy_made_by(conn, erasure.subject_name, erasure.keys_destroyed_at))
        if row is None:
            _request_again(store, erasure)
            requested += 1
        if found is not None:
            conn.execute(_FOUND, (Jsonb({"found": found}), erasure.erasure_id))
        job = load(conn, erasure.erasure_id)
        if job is not None:
            entries += scrub_audit_log(conn, job, keyring)
        progress(done, len(recorded))
    return Reapplied(len(recorded), reapplied, keys, requested, entries)


def _found(
    conn: psycopg.Connection[Any], erasure: RecordedErasure, progress: dict[str, Any]
) -> dict[str, Any] | None:
    """The recipient's notifications and what providers sent of them, as the restored read
    model has them, with any the erasure had found already; None for a user."""
    if erasure.subject_kind != SubjectKind.RECIPIENT.value:
        return None
    earlier = progress.get("found", {})
    tenant, _, hashed = erasure.subject_name
    ids = {uuid.UUID(i) for i in earlier.get("ids", [])} | {
        row[0] for row in conn.execute(_OF_RECIPIENT, (tenant, hashed))
    }
    ordered = sorted(ids)
    sent = {tuple(pair) for pair in earlier.get("sent", [])} | {
        (provider, message_id)
        for provider, message_id in conn.execute(_SENT_BY, (ordered,)).fetchall()
    }
    return {"ids": [str(i) for i in ordered], "sent": [list(pair) for pair in sorted(sent)]}


def _request_again(store: EventStore, erasure: RecordedErasure) -> None:
    event = SubjectErasureRequested(
        at=erasure.requested_at,
        tenant_id=erasure.tenant_id,
        erasure_id=erasure.erasure_id,
        subject_kind=SubjectKind(erasure.subject_kind),
        subject_ref=erasure.subject_ref,
        requested_by=REQUESTED_BY,
    )
    record_request(store, event, REQUESTED_BY)
