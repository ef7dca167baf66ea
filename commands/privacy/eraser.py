"""Carrying out erasures: a scheduler's poll runs each waiting one, step by step.

    settle        the subject's notifications: those not sent yet are cancelled, those with
                  a provider right now are let finish (recorded as sent or failed), then all
                  are erased; a user account is erased
    destroy_keys  every data key of the subject is destroyed, once the erasure is recorded
                  outside the database (a restore destroys them again)
    forget_keys   wait until no process can still hold one in its cache
    read_models   the projections have forgotten the notifications; cached pages, the
                  recipient's Redis keys and its audit-log fields are scrubbed
    copies        the subject's rows leave export files and archives
    providers     the providers' copies are deleted where their APIs allow
    receipt       SubjectErased, with what each store held and what was scrubbed

Each step is safe to run again, and its report is checkpointed in the job row with the
name of the next step, under an advisory lock on the erasure: a scheduler that dies midway
leaves the erasure to the next poll, which goes on from the step the row names. The
receipt is appended at version 1 of the erasure's stream, so there is only ever one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import redis
from psycopg.types.json import Jsonb

from commands.identity.handlers import user_row
from commands.privacy.audit_scrub import scrub_audit_log
from commands.privacy.job import NO_DELETION, Job, load
from domain.identity import user as users
from domain.notifications import notification as notifications
from domain.notifications.state import Status
from domain.privacy import StoreReport, SubjectErased, SubjectKind
from infrastructure.eventstore import meta
from infrastructure.eventstore.catalog import NOTIFICATION_EVENT_NAMES
from infrastructure.eventstore.store import ConcurrencyError, EventStore
from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION, stored_position
from infrastructure.log import get_logger
from infrastructure.privacy.erasure_record import ErasureRecord, RecordedErasure
from infrastructure.privacy.keyring import Keyring
from infrastructure.redis_keys import RedisKeys
from infrastructure.scheduling.runs import try_lock, unlock

log = get_logger(__name__)

STEPS = ("settle", "destroy_keys", "forget_keys", "read_models", "copies", "providers", "receipt")
UNSENT = frozenset({Status.REQUESTED, Status.SCHEDULED, Status.RETRY_SCHEDULED})
POLL_S = 0.2
ERASED_BY = "erasure"

# Deletes a provider's copy of a message by its id: True deleted, False it had none.
Deleter = Callable[[str], bool]

_WAITING = "SELECT erasure_id FROM erasures WHERE status <> 'done' ORDER BY requested_at"
_ADVANCE = """
UPDATE erasures SET status = 'running', step = %s, progress = progress || %s
WHERE erasure_id = %s
"""
_STARTED = "UPDATE erasures SET status = 'running', attempts = attempts + 1 WHERE erasure_id = %s"
_KEYS_DESTROYED = "UPDATE erasures SET keys_destroyed_at = now() WHERE erasure_id = %s"
_DONE = """
UPDATE erasures SET status = 'done', step = 'done', receipt = %s, completed_at = %s
WHERE erasure_id = %s
"""
# The last notification event recorded before the request: once the projection has it,
# every notification accepted before the request is in the read model.
_LAST_BEFORE_REQUEST = """
SELECT e.notification_id FROM stored_events e
WHERE e.notification_id < (SELECT notification_id FROM stored_events WHERE originator_id = %s
                           AND originator_version = 1)
  AND split_part(e.topic, '@', 1) = ANY(%s)
ORDER BY e.notification_id DESC LIMIT 1
"""
_OF_RECIPIENT = """
SELECT notification_id FROM notification_view
WHERE tenant_id = %s AND recipient_hash = %s AND status <> 'erased'
"""
_SENT_BY = """
SELECT provider, provider_message_id FROM notification_attempts
WHERE notification_id = ANY(%s) AND provider_message_id IS NOT NULL
"""
_STILL_SHOWN = """
SELECT count(*) FROM notification_view WHERE notification_id = ANY(%s) AND status <> 'erased'
"""


def erase_user(store: EventStore, tenant_id: str, user_id: uuid.UUID) -> dict[str, Any]:
    """Erase the tenant's account (`UserErased`: email and password gone, logins refused);
    the settle step's report. An account erased already is left as it is."""
    for _ in range(5):
        history = store.load(user_id)
        if not history:
            return {"users": 0, "erased": 0}
        user = users.replay(user_id, (r.event for r in history))
        if user.tenant_id != tenant_id:
            return {"users": 0, "erased": 0}
        events = users.erase(user, by=ERASED_BY, at=datetime.now(UTC))
        if not events:
            return {"users": 1, "erased": 0}
        after = user
        for event in events:
            after = users.evolve(after, event, user_id)
        try:
            store.append(user_id, len(history), events, writes=[user_row(after, events[-1].at)])
        except ConcurrencyError:
            continue
        return {"users": 1, "erased": 1}
    raise ConcurrencyError(f"user {user_id} kept changing while being erased")


class Eraser:
    def __init__(
        self,
        *,
        database_url: str,
        redis_client: redis.Redis,
        keys: RedisKeys,
        store: EventStore,
        keyring: Keyring,
        record: ErasureRecord,
        copies: Callable[[psycopg.Connection[Any], Job, Keyring], dict[str, StoreReport]],
        deleters: Mapping[str, Deleter],
        key_cache_s: float,
        settle_timeout_s: float,
        projection_timeout_s: float = 120.0,
    ) -> None:
        self._database_url = database_url
        self._redis = redis_client
        self._keys = keys
        self._store = store
        self._keyring = keyring
        self._record = record
        self._rewrite_copies = copies
        self._deleters = deleters
        self._key_cache_s = key_cache_s
        self._settle_timeout_s = settle_timeout_s
        self._projection_timeout_s = projection_timeout_s

    def run_waiting(self) -> int:
        """Carry out every waiting erasure no other scheduler is running; returns how many
        finished."""
        finished = 0
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            for (erasure_id,) in conn.execute(_WAITING).fetchall():
                name = f"erasure:{erasure_id}"
                if not try_lock(conn, name):
                    continue
                try:
                    job = load(conn, erasure_id)
                    if job is None:
                        continue  # finished meanwhile by whoever held the lock before
                    conn.execute(_STARTED, (erasure_id,))
                    self.run(conn, job)
                    finished += 1
                except Exception:  # one erasure's trouble must not hold up the others
                    log.exception(
                        "erasure step failed; the next poll goes on from it",
                        erasure_id=str(erasure_id),
                    )
                finally:
                    unlock(conn, name)
        return finished

    def run(self, conn: psycopg.Connection[Any], job: Job) -> None:
        about = self._store.codec.decode_meta(job.meta)
        with meta.bound(about):
            while job.step in STEPS:
                step = job.step
                report = getattr(self, f"_{step}")(conn, job)
                following = STEPS[STEPS.index(step) + 1] if step != STEPS[-1] else "done"
                if step != "receipt":
                    conn.execute(_ADVANCE, (following, Jsonb({step: report}), job.erasure_id))
                log.info("erasure step done", erasure_id=str(job.erasure_id), step=step)
                reloaded = load(conn, job.erasure_id)
                if reloaded is None:
                    return
                job = reloaded

    # Steps

    def _settle(self, conn: psycopg.Connection[Any], job: Job) -> dict[str, Any]:
        if job.kind is SubjectKind.USER:
            return self._erase_user(conn, job)
        # Whatever was accepted before the request is in the read model once it has caught
        # up with the request's position.
        names = list(NOTIFICATION_EVENT_NAMES)
        before = conn.execute(_LAST_BEFORE_REQUEST, (job.erasure_id, names)).fetchone()
        self._wait_projected(conn, before[0] if before else 0)
        earlier = job.progress.get("found", {}).get("ids", [])
        ids = sorted(
            {uuid.UUID(i) for i in earlier}
            | {
                row[0]
                for row in conn.execute(_OF_RECIPIENT, (job.tenant_id, job.hashed(self._keyring)))
            }
        )
        sent = conn.execute(_SENT_BY, (ids,)).fetchall()
        # Checkpointed before anything is erased: an erased row no longer says whose it was.
        found = {
            "ids": [str(i) for i in ids],
            "sent": [[provider, message_id] for provider, message_id in sent],
        }
        conn.execute(_ADVANCE, ("settle", Jsonb({"found": found}), job.erasure_id))
        cancelled = erased = 0
        last_position = 0
        for notification_id in ids:
            outcome, position = self._erase_notification(notification_id)
            cancelled += outcome == "cancelled"
            erased += outcome in {"cancelled", "erased"}
            last_position = max(last_position, position)
        return {
            "notifications": len(ids),
            "cancelled": cancelled,
            "erased": erased,
            "position": last_position,
        }

    def _erase_notification(self, notification_id: uuid.UUID) -> tuple[str, int]:
        """Cancel it if unsent, let it finish if with a provider now, then erase it."""
        deadline = time.monotonic() + self._settle_timeout_s
        while True:
            history = self._store.load(notification_id)
            if not history:
                return "gone", 0
            current = notifications.replay(notification_id, (r.event for r in history))
            if current.erased:
                return "erased_before", 0
            if current.status is Status.DISPATCHING and time.monotonic() < deadline:
                time.sleep(POLL_S)  # with the provider now: its answer is recorded first
                continue
            now = datetime.now(UTC)
            events: list[Any] = []
            outcome = "erased"
            if current.status in UNSENT:
                events += notifications.cancel(current, by=ERASED_BY, reason="erasure", at=now)
                outcome = "cancelled"
                for event in events:
                    current = notifications.evolve(current, event, notification_id)
            events += notifications.erase(current, by=ERASED_BY, at=now)
            try:
                positions = self._store.append(notification_id, len(history), events)
            except ConcurrencyError:
                continue  # a dispatcher or a report got there first: decide again
            return outcome, positions[-1] if positions else 0

    def _erase_user(self, _conn: psycopg.Connection[Any], job: Job) -> dict[str, Any]:
        return erase_user(self._store, job.tenant_id, uuid.UUID(job.ref))

    def _destroy_keys(self, conn: psycopg.Connection[Any], job: Job) -> dict[str, Any]:
        hashed = job.hashed(self._keyring)
        name = (job.tenant_id, job.kind.value, hashed)
        with conn.transaction():
            # Recorded outside the database before the keys go, so that no key is destroyed
            # that a restore of an older backup would not destroy again.
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None  # noqa: S101 - one row, always
            self._record.append(
                RecordedErasure(
                    erasure_id=job.erasure_id,
                    tenant_id=job.tenant_id,
                    subject_kind=job.kind.value,
                    subject_hash=hashed.hex(),
                    subject_ref=job.ref,
                    requested_at=job.requested_at,
                    keys_destroyed_at=row[0],
                )
            )
            ids = self._keyring.destroy_hashed(conn, name)
            conn.execute(_KEYS_DESTROYED, (job.erasure_id,))
        return {"keys": [str(i) for i in ids]}

    def _forget_keys(self, _conn: psycopg.Connection[Any], job: Job) -> dict[str, Any]:
        destroyed = job.keys_destroyed_at or datetime.now(UTC)
        left = self._key_cache_s - (datetime.now(UTC) - destroyed).total_seconds()
        if left > 0:
            time.sleep(left + POLL_S)
        return {"waited_s": max(left, 0.0)}

    def _read_models(self, conn: psycopg.Connection[Any], job: Job) -> dict[str, Any]:
        settled = job.progress.get("settle", {})
        self._wait_projected(conn, int(settled.get("position", 0)))
        ids = [uuid.UUID(i) for i in job.progress.get("found", {}).get("ids", [])]
        still = conn.execute(_STILL_SHOWN, (ids,)).fetchone()
        shown = int(still[0]) if still else 0
        pages = 0
        for key in self._redis.scan_iter(match=f"{self._keys.list_pages(job.tenant_id)}*"):
            pages += int(self._redis.delete(key))
        hashed = job.hashed(self._keyring).hex()
        recent = int(self._redis.delete(self._keys.recent(job.tenant_id, hashed)))
        self._redis.hdel(self._keys.unread(job.tenant_id), hashed)
        entries = scrub_audit_log(conn, job, self._keyring)
        return {
            "rows": len(ids),
            "rows_still_shown": shown,
            "cached_pages": pages,
            "recent_keys": recent,
            "audit_entries": entries,
        }

    def _copies(self, conn: psycopg.Connection[Any], job: Job) -> dict[str, Any]:
        reports = self._rewrite_copies(conn, job, self._keyring)
        return {name: msgspec.to_builtins(report) for name, report in reports.items()}

    def _providers(self, conn: psycopg.Connection[Any], job: Job) -> dict[str, Any]:
        done: list[str] = list(job.progress.get("providers_done", []))
        sent = job.progress.get("found", {}).get("sent", [])
        reports: dict[str, dict[str, Any]] = {}
        gone = 0
        for provider, message_id in sent:
            report = reports.setdefault(provider, {"found": 0, "scrubbed": 0, "note": ""})
            report["found"] += 1
            deleter = self._deleters.get(provider)
            if deleter is None:
                report["note"] = NO_DELETION.get(provider, NO_DELETION["other"])
                continue
            if message_id not in done:
                # A ProviderError leaves the step to the next poll, which skips those done.
                gone += not deleter(message_id)
                done.append(message_id)
                conn.execute(
                    _ADVANCE, ("providers", Jsonb({"providers_done": done}), job.erasure_id)
                )
            report["scrubbed"] += 1
            if gone:
                report["note"] = f"{gone} had been deleted already"
        return reports

    def _receipt(self, conn: psycopg.Connection[Any], job: Job) -> dict[str, Any]:
        now = datetime.now(UTC)
        receipt = job.receipt(now)
        event = SubjectErased(
            at=now, tenant_id=job.tenant_id, erasure_id=job.erasure_id, receipt=receipt
        )
        done = (_DONE, (Jsonb(msgspec.to_builtins(receipt)), now, job.erasure_id))
        try:
            self._store.append(job.erasure_id, 1, [event], writes=[done])
        except ConcurrencyError:
            # Recorded by an earlier run that died before it could say so: that receipt it is.
            recorded = self._store.load(job.erasure_id)[-1].event
            assert isinstance(recorded, SubjectErased)  # noqa: S101 - the stream's last event
            conn.execute(
                _DONE,
                (Jsonb(msgspec.to_builtins(recorded.receipt)), recorded.at, job.erasure_id),
            )
        return {}

    def _wait_projected(self, conn: psycopg.Connection[Any], position: int) -> None:
        deadline = time.monotonic() + self._projection_timeout_s
        while stored_position(conn, NOTIFICATIONS_PROJECTION) < position:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the notifications projection has not reached position {position}; "
                    "the erasure goes on at the next poll"
                )
            time.sleep(POLL_S)
