"""An erasure as its job row holds it: the subject, the step it is at, each step's report;
and the receipt those reports add up to."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from domain.privacy import Receipt, StoreReport, SubjectKind, nothing_found
from infrastructure.privacy.keyring import Keyring, Subject

_JOB = """
SELECT erasure_id, tenant_id, subject_kind, subject_ref, requested_at, meta, status, step,
       progress, keys_destroyed_at
FROM erasures WHERE erasure_id = %s
"""

# What the receipt says of a provider's copy that its API cannot delete.
NO_DELETION = {
    "sendgrid": "SendGrid's API cannot delete a sent message: its copy stays in SendGrid's "
    "activity log until SendGrid's own retention removes it",
    "fcm": "Firebase Cloud Messaging keeps no message that can be deleted through its API; "
    "a message not yet delivered to the device expires after its time to live",
    "other": "this provider's API offers no deletion of a sent message",
}


class Job(msgspec.Struct, frozen=True, kw_only=True):
    erasure_id: uuid.UUID
    tenant_id: str
    kind: SubjectKind
    ref: str
    requested_at: datetime
    meta: bytes | None
    step: str
    progress: dict[str, Any]
    keys_destroyed_at: datetime | None

    def hashed(self, keyring: Keyring) -> bytes:
        """The subject's keyed hash, as subject_keys and the read models know it."""
        if self.kind is SubjectKind.RECIPIENT:
            return bytes.fromhex(self.ref)
        return keyring.subject_hash(Subject(self.tenant_id, self.kind.value, self.ref))

    def receipt(self, completed_at: datetime) -> Receipt:
        stores = _stores(self.progress)
        keys = self.progress.get("destroy_keys", {}).get("keys", [])
        destroyed = tuple(uuid.UUID(k) for k in keys)
        return Receipt(
            erasure_id=self.erasure_id,
            tenant_id=self.tenant_id,
            subject_kind=self.kind,
            subject_ref=self.ref,
            requested_at=self.requested_at,
            completed_at=completed_at,
            destroyed_keys=destroyed,
            stores=stores,
            nothing_found=nothing_found(stores, destroyed),
        )


def load(conn: psycopg.Connection[Any], erasure_id: uuid.UUID) -> Job | None:
    """The erasure's job, None once it is done."""
    row = conn.execute(_JOB, (erasure_id,)).fetchone()
    if row is None or row[6] == "done":
        return None
    return Job(
        erasure_id=row[0],
        tenant_id=row[1],
        kind=SubjectKind(row[2]),
        ref=row[3],
        requested_at=row[4],
        meta=bytes(row[5]) if row[5] is not None else None,
        step=row[7],
        progress=row[8] or {},
        keys_destroyed_at=row[9],
    )


def _stores(progress: dict[str, Any]) -> dict[str, StoreReport]:
    """Per store, from each step's report: what was found, what was scrubbed."""
    settled = progress.get("settle", {})
    keys = progress.get("destroy_keys", {}).get("keys", [])
    read = progress.get("read_models", {})
    stores: dict[str, StoreReport] = {}
    if "users" in settled:
        stores["users"] = StoreReport(found=settled["users"], scrubbed=settled["erased"])
    else:
        count = settled.get("notifications", 0)
        cancelled = settled.get("cancelled", 0)
        stores["notifications"] = StoreReport(
            found=count,
            scrubbed=count - read.get("rows_still_shown", 0),
            note=f"{cancelled} not yet sent were cancelled" if cancelled else "",
        )
    stores["event_store"] = StoreReport(
        found=len(keys),
        scrubbed=len(keys),
        note="personal fields are sealed under the subject's keys, which are destroyed",
    )
    redis_keys = read.get("cached_pages", 0) + read.get("recent_keys", 0)
    stores["redis"] = StoreReport(found=redis_keys, scrubbed=redis_keys)
    entries = read.get("audit_entries", 0)
    stores["audit_log"] = StoreReport(found=entries, scrubbed=entries)
    for name, report in progress.get("copies", {}).items():
        stores[name] = msgspec.convert(report, StoreReport)
    for provider, report in progress.get("providers", {}).items():
        stores[f"provider:{provider}"] = msgspec.convert(report, StoreReport)
    return stores
