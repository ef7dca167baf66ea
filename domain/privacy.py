"""Erasure: the facts of forgetting a data subject, and the receipt that says what went.

A data subject is a tenant's recipient (an address, a phone number, a device token) or a
user account. Its personal data is sealed under a key of its own; erasing it destroys that
key, scrubs what the read models, export files and archives hold in the clear, and asks the
providers to delete their copies where their APIs allow. The events name a recipient by its
keyed hash, never by its address: the log must not keep what it records forgetting.
"""

from __future__ import annotations

import enum
from datetime import datetime
from uuid import UUID

import msgspec

from domain.events import DomainEvent


class SubjectKind(enum.StrEnum):
    RECIPIENT = "recipient"
    USER = "user"


class StoreReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one store held of the subject, and what of it was scrubbed."""

    found: int
    scrubbed: int
    note: str = ""  # what could not be done there, and why


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    erasure_id: UUID
    tenant_id: str
    subject_kind: SubjectKind
    subject_ref: str  # the recipient's keyed hash (hex), or the user's id
    requested_at: datetime
    completed_at: datetime
    destroyed_keys: tuple[UUID, ...]  # every data key the subject had, all destroyed
    stores: dict[str, StoreReport]
    nothing_found: bool


class SubjectErasureRequested(DomainEvent, frozen=True, kw_only=True):
    tenant_id: str
    erasure_id: UUID
    subject_kind: SubjectKind
    subject_ref: str
    requested_by: str


class SubjectErased(DomainEvent, frozen=True, kw_only=True):
    tenant_id: str
    erasure_id: UUID
    receipt: Receipt


def nothing_found(stores: dict[str, StoreReport], destroyed_keys: tuple[UUID, ...]) -> bool:
    return not destroyed_keys and all(report.found == 0 for report in stores.values())


PRIVACY_EVENTS: tuple[type[DomainEvent], ...] = (SubjectErasureRequested, SubjectErased)
