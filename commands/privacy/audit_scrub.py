"""The subject's traces in the audit log: a user's client address, user agent and email in
the entries of what it did or what was done to it; a recipient's address where a failed
login tried it. The entries stay (who did what, when); those fields go."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from domain.privacy import SubjectKind
from infrastructure.privacy.keyring import Keyring, Subject

if TYPE_CHECKING:
    from commands.privacy.job import Job

_WITH_EMAIL = """
SELECT entry_id, details->>'email' FROM audit_log
WHERE tenant_id = %s AND details ? 'email'
"""
_OF_USER = """
SELECT entry_id FROM audit_log
WHERE tenant_id = %s AND (actor = %s OR subject = %s)
  AND (ip IS NOT NULL OR user_agent IS NOT NULL OR details ? 'email')
"""
_SCRUB = """
UPDATE audit_log SET ip = NULL, user_agent = NULL, details = details - 'email'
WHERE entry_id = ANY(%s)
"""


def scrub_audit_log(conn: psycopg.Connection[Any], job: Job, keyring: Keyring) -> int:
    """Scrub the subject's fields from its audit entries; returns how many entries."""
    if job.kind is SubjectKind.USER:
        rows = conn.execute(_OF_USER, (job.tenant_id, job.ref, job.ref)).fetchall()
        entries = [row[0] for row in rows]
    else:
        wanted = job.hashed(keyring)
        entries = [
            entry_id
            for entry_id, email in conn.execute(_WITH_EMAIL, (job.tenant_id,)).fetchall()
            if email and keyring.subject_hash(Subject(job.tenant_id, "recipient", email)) == wanted
        ]
    if entries:
        conn.execute(_SCRUB, (entries,))
    return len(entries)
