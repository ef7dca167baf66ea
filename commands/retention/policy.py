"""Setting a tenant's retention. The policy is event-sourced, one stream per tenant, and its
read model row is written with the event, so archival never reads a policy the log lacks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from domain.retention import RetentionChanged, RetentionPolicy, change_retention
from infrastructure.eventstore.store import EventStore, Write
from infrastructure.messagebus import Command, Handlers

_NAMESPACE = uuid.UUID("6c1f7d2e-4b1a-4f0e-9a57-0c3d8e5b2a41")
_UPSERT = """
INSERT INTO retention_policies (tenant_id, notifications_days, events_days, version,
    updated_at, updated_by)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant_id) DO UPDATE SET notifications_days = excluded.notifications_days,
    events_days = excluded.events_days, version = excluded.version,
    updated_at = excluded.updated_at, updated_by = excluded.updated_by
WHERE retention_policies.version < excluded.version
"""


def policy_stream(tenant_id: str) -> uuid.UUID:
    """The stream of a tenant's retention policy: the same id for the same tenant, always."""
    return uuid.uuid5(_NAMESPACE, tenant_id)


class ChangeRetention(Command[RetentionPolicy], frozen=True, kw_only=True):
    tenant_id: str
    policy: RetentionPolicy
    changed_by: str


def change_policy(
    cmd: ChangeRetention, *, store: EventStore, default_retention: RetentionPolicy
) -> RetentionPolicy:
    """Set the tenant's policy; InvalidValueError naming the field that is out of bounds.
    Setting the policy it already has records nothing."""
    stream = policy_stream(cmd.tenant_id)
    history = store.load(stream)
    current = default_retention
    for recorded in history:
        if isinstance(recorded.event, RetentionChanged):
            current = RetentionPolicy(
                notifications_days=recorded.event.notifications_days,
                events_days=recorded.event.events_days,
            )
    now = datetime.now(UTC)
    events = change_retention(
        current, cmd.policy, tenant_id=cmd.tenant_id, by=cmd.changed_by, at=now
    )
    if events:
        version = len(history) + 1
        row: Write = (
            _UPSERT,
            (
                cmd.tenant_id,
                cmd.policy.notifications_days,
                cmd.policy.events_days,
                version,
                now,
                cmd.changed_by,
            ),
        )
        store.append(stream, len(history), events, writes=[row])
    return cmd.policy


HANDLERS: Handlers = {ChangeRetention: change_policy}
