"""What the audit log records: admins' and operators' actions, every login, one entry per
command, and nothing secret."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from domain.identity.roles import Role
from domain.identity.session import LoginFailed, LoginRefusal
from domain.identity.user import RoleGranted, UserRegistered
from domain.notifications import notification as notifications
from domain.notifications.values import Channel, Content, Priority
from infrastructure.eventstore.meta import EventMeta
from projections.audit.entries import Logged, audited, entries

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _meta(*roles: str, command_id: str = "c1") -> EventMeta:
    return EventMeta(
        actor="u-1",
        actor_kind="user",
        roles=roles,
        tenant="acme",
        ip="198.51.100.1",
        user_agent="curl/8",
        request_id="r-1",
        command="Anything",
        command_id=command_id,
    )


def _requested(meta: EventMeta, position: int) -> Logged:
    events = notifications.request(
        tenant_id="acme",
        channel=Channel.EMAIL,
        recipient="ada@example.com",
        content=Content(subject="s", body="b"),
        priority=Priority.HIGH,
        send_at=None,
        fallback=(),
        fallback_recipients={},
        metadata={},
        idempotency_key=None,
        requested_by="u-1",
        correlation_id=None,
        at=NOW,
    )
    return Logged(position, uuid.uuid4(), "NotificationRequested", events[0], meta)


def test_admins_and_operators_are_audited_senders_are_not() -> None:
    assert audited("RoleGranted", _meta(Role.ADMIN))
    assert audited("NotificationRequested", _meta(Role.OPERATOR, Role.SENDER))
    assert not audited("NotificationRequested", _meta(Role.SENDER))
    assert not audited("NotificationSent", None)  # a dispatcher's own work


def test_every_login_is_audited_whoever_tries() -> None:
    assert audited("LoginFailed", None)
    assert audited("LoginSucceeded", _meta(Role.USER))


def test_a_batch_is_one_entry_counting_its_notifications() -> None:
    meta = _meta(Role.ADMIN)
    made = entries([_requested(meta, p) for p in range(10, 13)])
    assert len(made) == 1
    entry = made[0]
    assert (entry.count, entry.first_position, entry.last_position) == (3, 10, 12)
    assert entry.action == "notification.requested"
    assert (entry.actor, entry.ip, entry.user_agent, entry.tenant_id) == (
        "u-1",
        "198.51.100.1",
        "curl/8",
        "acme",
    )
    assert entry.details == {"channel": "email", "priority": "high"}


def test_two_commands_make_two_entries() -> None:
    made = entries(
        [
            _requested(_meta(Role.ADMIN, command_id="a"), 1),
            _requested(_meta(Role.ADMIN, command_id="b"), 2),
        ]
    )
    assert [e.entry_id for e in made] == ["a", "b"]


def test_no_secret_reaches_an_entry() -> None:
    user_id = uuid.uuid4()
    registered = UserRegistered(
        at=NOW, tenant_id="acme", email="ada@example.com", password_hash="$2b$12$x", roles=()
    )
    granted = RoleGranted(at=NOW, role=Role.OPERATOR, granted_by="u-1")
    made = entries(
        [
            Logged(1, user_id, "UserRegistered", registered, _meta(Role.ADMIN, command_id="r")),
            Logged(2, user_id, "RoleGranted", granted, _meta(Role.ADMIN, command_id="g")),
        ]
    )
    assert made[0].details == {"email": "ada@example.com", "roles": []}
    assert made[1].details == {"role": "operator"}
    assert made[1].subject == str(user_id)
    assert all("$2b$" not in str(e.details) for e in made)


def test_a_failed_login_names_the_email_and_why_but_no_actor() -> None:
    failed = LoginFailed(
        at=NOW, tenant_id="acme", email="eve@example.com", reason=LoginRefusal.UNKNOWN_ACCOUNT
    )
    request_only = EventMeta(ip="203.0.113.5", user_agent="bot", request_id="r-9")
    (entry,) = entries([Logged(7, uuid.uuid4(), "LoginFailed", failed, request_only)])
    assert entry.action == "login.failed"
    assert entry.actor is None
    assert entry.subject is None
    assert entry.tenant_id == "acme"
    assert entry.details == {"email": "eve@example.com", "reason": "unknown_account"}
    assert entry.entry_id == "position:7"
