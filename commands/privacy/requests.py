"""Asking for an erasure. The request is recorded (event and job row in one transaction) and
answered at once; a scheduler carries it out step by step (see `eraser`).

A subject is named by a recipient's address or a user's id. Only a keyed hash of the
address is kept, in the row and in the event. Asking again while an erasure of the same
subject is under way answers with that erasure, so a retried request never erases twice.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from domain.errors import ConflictError, InvalidValueError
from domain.notifications.values import Channel, check_recipient
from domain.privacy import SubjectErasureRequested, SubjectKind
from infrastructure.eventstore import meta
from infrastructure.eventstore.store import ConstraintViolationError, EventStore
from infrastructure.messagebus import Command, Handlers

FIRST_STEP = "settle"
_INSERT = """
INSERT INTO erasures (erasure_id, tenant_id, subject_kind, subject_ref, requested_by,
    requested_at, meta, status, step)
VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending', %s)
"""
_OPEN = """
SELECT erasure_id, requested_at FROM erasures
WHERE tenant_id = %s AND subject_kind = %s AND subject_ref = %s AND status <> 'done'
"""
_BACKFILL = "SELECT unsealed_through, sealed_through FROM privacy_backfill"


@dataclass(frozen=True)
class ErasureAccepted:
    erasure_id: uuid.UUID
    requested_at: datetime
    already_requested: bool  # an erasure of this subject was already under way


class RequestErasure(Command[ErasureAccepted], frozen=True, kw_only=True):
    tenant_id: str
    recipient: str | None = None
    user_id: uuid.UUID | None = None
    requested_by: str


def normalised_recipient(raw: str) -> str:
    """The address as notifications store it: InvalidValueError naming `recipient` when it
    is no email address, E.164 number or device token."""
    # The shape says which kind of address it is: an @, a leading +, or neither.
    channel = Channel.EMAIL if "@" in raw else Channel.SMS if raw.startswith("+") else Channel.PUSH
    try:
        return check_recipient(channel, raw)
    except InvalidValueError:
        raise InvalidValueError(
            "recipient", "is not an email address, an E.164 phone number or a device token"
        ) from None


async def request_erasure(
    cmd: RequestErasure, *, store: EventStore, pool: AsyncConnectionPool
) -> ErasureAccepted:
    if (cmd.recipient is None) == (cmd.user_id is None):
        raise InvalidValueError("recipient", "or user_id is required, and only one of them")
    async with pool.connection() as conn:
        row = await (await conn.execute(_BACKFILL)).fetchone()
    if row is not None and row[1] < row[0]:
        raise ConflictError(
            f"events up to position {row[0]} were stored before personal data was sealed, "
            "and destroying a key cannot reach them: run `herald gdpr encrypt-existing` first"
        )
    if cmd.recipient is not None:
        kind = SubjectKind.RECIPIENT
        address = normalised_recipient(cmd.recipient)
        digest = await asyncio.to_thread(store.codec.recipient_hash, cmd.tenant_id, address)
        ref = digest.hex()
    else:
        kind, ref = SubjectKind.USER, str(cmd.user_id)
    for _ in range(3):
        async with pool.connection() as conn:
            found = await (await conn.execute(_OPEN, (cmd.tenant_id, kind, ref))).fetchone()
        if found is not None:
            return ErasureAccepted(found[0], found[1], already_requested=True)
        erasure_id, now = uuid7(), datetime.now(UTC)
        event = SubjectErasureRequested(
            at=now,
            tenant_id=cmd.tenant_id,
            erasure_id=erasure_id,
            subject_kind=kind,
            subject_ref=ref,
            requested_by=cmd.requested_by,
        )
        try:
            await asyncio.to_thread(record_request, store, event, cmd.requested_by)
        except ConstraintViolationError:
            continue  # asked twice at once: the other request's erasure is the one
        return ErasureAccepted(erasure_id, now, already_requested=False)
    raise AssertionError("an open erasure both exists and does not")  # pragma: no cover


def record_request(store: EventStore, event: SubjectErasureRequested, requested_by: str) -> None:
    """The event, and the job row with the request's metadata sealed as the event's is, so
    that the receipt is recorded later as part of the same audited action."""
    about, _ = store.codec.encode_all([(event.erasure_id, event)], meta.current())
    row = (
        event.erasure_id,
        event.tenant_id,
        event.subject_kind.value,
        event.subject_ref,
        requested_by,
        event.at,
        about,
        FIRST_STEP,
    )
    store.append(event.erasure_id, 0, [event], writes=[(_INSERT, row)])


HANDLERS: Handlers = {RequestErasure: request_erasure}
