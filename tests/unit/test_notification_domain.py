"""The notification model: its input checks, its transition table, and its events' round trip."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError, InvalidValueError
from domain.notifications import notification as notifications
from domain.notifications.events import (
    NOTIFICATION_EVENTS,
    ArchivedNotification,
    NotificationDelivered,
    NotificationEvent,
)
from domain.notifications.notification import (
    TRANSITIONS,
    IllegalTransitionError,
    Notification,
    Status,
)
from domain.notifications.values import (
    MAX_BODY_BYTES,
    MAX_METADATA_KEYS,
    Channel,
    Content,
    Priority,
    check_content,
    check_fallback,
    check_idempotency_key,
    check_metadata,
    check_recipient,
    check_send_at,
)
from infrastructure.eventstore.codec import EventCodec

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RECIPIENTS = {Channel.EMAIL: "ada@example.com", Channel.SMS: "+14155550100", Channel.PUSH: "d:1"}
EMAIL = Content(subject="Hi", body="Hello")


def _requested(
    channel: Channel = Channel.EMAIL,
    fallback: tuple[Channel, ...] = (),
    send_at: datetime | None = None,
) -> list[NotificationEvent]:
    return notifications.request(
        tenant_id="t",
        channel=channel,
        recipient=RECIPIENTS[channel],
        content=EMAIL,
        priority=Priority.NORMAL,
        send_at=send_at,
        fallback=fallback,
        fallback_recipients={c: RECIPIENTS[c] for c in fallback},
        metadata={"order": "42"},
        idempotency_key=None,
        requested_by="sender",
        correlation_id="c-1",
        at=NOW,
    )


def _apply(n: Notification, events: list[NotificationEvent]) -> Notification:
    for event in events:
        n = notifications.evolve(n, event, n.id)
    return n


def _sent() -> Notification:
    n = notifications.replay(uuid.uuid4(), _requested())
    n = _apply(n, notifications.start_dispatch(n, provider="ses", at=NOW))
    return _apply(n, notifications.record_sent(n, provider_message_id="m", at=NOW))


def _invalid(check: Callable[[], object]) -> str:
    with pytest.raises(InvalidValueError) as caught:
        check()
    return caught.value.field


@pytest.mark.parametrize(
    ("channel", "raw"),
    [
        (Channel.EMAIL, "not-an-address"),
        (Channel.SMS, "4155550100"),
        (Channel.SMS, "+14155550100\n"),
        (Channel.SMS, "+0123"),
        (Channel.PUSH, "has space"),
        (Channel.PUSH, ""),
    ],
)
def test_recipients_must_suit_their_channel(channel: Channel, raw: str) -> None:
    assert _invalid(lambda: check_recipient(channel, raw)) == "recipient"


def test_good_recipients_pass_and_emails_are_lowercased() -> None:
    assert check_recipient(Channel.EMAIL, "Ada@Example.com") == "ada@example.com"
    assert check_recipient(Channel.PUSH, "abc:DEF_1.2-3") == "abc:DEF_1.2-3"


@pytest.mark.parametrize(
    ("channel", "content", "field"),
    [
        (Channel.SMS, Content(), "body"),
        (Channel.SMS, Content(body="x", template_id="t"), "template_id"),
        (Channel.EMAIL, Content(body="x"), "subject"),
        (Channel.SMS, Content(body="é" * (MAX_BODY_BYTES // 2 + 1)), "body"),
        (Channel.EMAIL, Content(subject="x" * 999, body="b"), "subject"),
        (Channel.EMAIL, Content(subject="a\r\nBcc: x@y.z", body="b"), "subject"),
        (Channel.PUSH, Content(template_id="no spaces"), "template_id"),
        (Channel.PUSH, Content(template_id="t", variables={"v": "x" * 16_384}), "variables"),
    ],
)
def test_content_rules(channel: Channel, content: Content, field: str) -> None:
    assert _invalid(lambda: check_content(channel, content)) == field


def test_content_that_follows_the_rules_passes() -> None:
    assert check_content(Channel.SMS, Content(subject="ignored", body="b")).body == "b"
    assert check_content(Channel.EMAIL, Content(template_id="welcome.v2")).subject is None
    assert check_content(Channel.SMS, Content(body="é" * (MAX_BODY_BYTES // 2))).body


def test_metadata_is_bounded_in_keys_and_size() -> None:
    too_many = {str(i): "" for i in range(MAX_METADATA_KEYS + 1)}
    assert _invalid(lambda: check_metadata(too_many)) == "metadata"
    assert _invalid(lambda: check_metadata({"k": "x" * 4096})) == "metadata"
    assert check_metadata({"k": "v"}) == {"k": "v"}


def test_send_at_must_be_aware_and_within_a_year_from_a_minute_ago() -> None:
    naive = datetime(2026, 1, 2)
    assert _invalid(lambda: check_send_at(naive, NOW)) == "send_at"
    assert _invalid(lambda: check_send_at(NOW - timedelta(seconds=61), NOW)) == "send_at"
    assert _invalid(lambda: check_send_at(NOW + timedelta(days=366), NOW)) == "send_at"
    assert check_send_at(NOW - timedelta(seconds=59), NOW) == NOW - timedelta(seconds=59)
    assert check_send_at(None, NOW) is None


@pytest.mark.parametrize(
    "fallback",
    [(Channel.EMAIL,), (Channel.SMS, Channel.SMS), (Channel.SMS, Channel.PUSH, Channel.SMS)],
)
def test_fallback_names_other_channels_once(fallback: tuple[Channel, ...]) -> None:
    assert _invalid(lambda: check_fallback(Channel.EMAIL, fallback)) == "fallback"


def test_idempotency_keys_are_short_visible_ascii() -> None:
    for bad in ("", "x" * 201, "café", "a b"):
        with pytest.raises(InvalidValueError, match="idempotency_key"):
            check_idempotency_key(bad)
    assert check_idempotency_key("order-42:v1") == "order-42:v1"


def test_a_request_for_later_is_scheduled_and_one_for_now_is_not() -> None:
    assert len(_requested(send_at=NOW + timedelta(seconds=30))) == 1
    later = _requested(send_at=NOW + timedelta(hours=1))
    assert [type(e).__name__ for e in later] == ["NotificationRequested", "NotificationScheduled"]
    assert {(e.tenant_id, e.correlation_id) for e in later} == {("t", "c-1")}


def test_a_sent_notification_cannot_be_cancelled() -> None:
    with pytest.raises(
        IllegalTransitionError, match="NotificationCancelled to a notification that is sent"
    ):
        notifications.cancel(_sent(), by="x", reason=None, at=NOW)


def test_a_notification_never_sent_cannot_be_delivered() -> None:
    n = notifications.replay(uuid.uuid4(), _requested())
    with pytest.raises(IllegalTransitionError):
        notifications.record_delivered(n, at=NOW)
    corrupted = [*_requested(), NotificationDelivered(at=NOW, tenant_id="t")]
    with pytest.raises(IllegalTransitionError, match="that is requested"):
        notifications.replay(n.id, corrupted)


def test_a_permanent_failure_is_not_retried_but_can_fall_back() -> None:
    n = _sent()
    n = _apply(n, notifications.record_failure(n, reason="no such user", permanent=True, at=NOW))
    with pytest.raises(IllegalTransitionError, match="permanent"):
        notifications.schedule_retry(n, retry_at=NOW, at=NOW)
    with pytest.raises(IllegalTransitionError, match="no fallback"):
        notifications.fall_back(n, at=NOW)


def test_cancel_and_erase_twice_record_nothing_the_second_time() -> None:
    n = notifications.replay(uuid.uuid4(), _requested())
    n = _apply(n, notifications.cancel(n, by="x", reason="typo", at=NOW))
    assert notifications.cancel(n, by="x", reason=None, at=NOW) == []
    n = _apply(n, notifications.erase(n, by="x", at=NOW))
    assert (n.status, n.recipient, n.erased) == ("erased", "", True)
    assert notifications.erase(n, by="x", at=NOW) == []


DECISIONS: dict[str, Callable[[Notification, datetime, bool, str], list[NotificationEvent]]] = {
    "dispatch": lambda n, at, _, s: notifications.start_dispatch(n, provider=s, at=at),
    "sent": lambda n, at, _, s: notifications.record_sent(n, provider_message_id=s, at=at),
    "fail": lambda n, at, p, s: notifications.record_failure(n, reason=s, permanent=p, at=at),
    "retry": lambda n, at, _, s: notifications.schedule_retry(
        n, retry_at=at + timedelta(minutes=len(s)), at=at
    ),
    "fall_back": lambda n, at, _, s: notifications.fall_back(n, at=at),
    "dead_letter": lambda n, at, _, s: notifications.dead_letter(n, reason=s, at=at),
    "delivered": lambda n, at, _, s: notifications.record_delivered(n, at=at),
    "opened": lambda n, at, _, s: notifications.record_opened(n, provider_event_id=s, at=at),
    "bounced": lambda n, at, _, s: notifications.record_bounced(n, reason=s, at=at),
    "requeue": lambda n, at, _, s: notifications.request_retry(n, by=s, at=at),
    "cancel": lambda n, at, _, s: notifications.cancel(n, by=s, reason=s or None, at=at),
    "erase": lambda n, at, _, s: notifications.erase(n, by=s, at=at),
}
# Cancel and erase end a notification's story, so they are drawn less often than the rest.
_DRAWS = [name for name in DECISIONS for _ in range(1 if name in {"cancel", "erase"} else 4)]
steps = st.lists(
    st.tuples(
        st.sampled_from(_DRAWS),
        st.integers(0, 180),  # minutes the clock moves before this step
        st.booleans(),
        st.text(max_size=5),
    ),
    min_size=30,
    max_size=80,
)
starts = st.tuples(
    st.sampled_from(list(Channel)),
    st.permutations(list(Channel)),
    st.integers(0, 2),
    st.none() | st.integers(-1, 600).map(lambda m: NOW + timedelta(minutes=m)),
)


@given(starts, steps)
def test_any_sequence_of_decisions_keeps_the_model_consistent(
    start: tuple[Channel, list[Channel], int, datetime | None],
    plan: list[tuple[str, int, bool, str]],
) -> None:
    channel, others, hops, send_at = start
    fallback = tuple(c for c in others if c is not channel)[:hops]
    recorded: list[NotificationEvent] = list(_requested(channel, fallback, send_at))
    n = notifications.replay(uuid.uuid4(), recorded)
    at = NOW
    for name, minutes, flag, text in plan:
        at += timedelta(minutes=minutes)
        try:
            events = DECISIONS[name](n, at, flag, text)
        except DomainError:
            continue
        for event in events:
            before = n.status
            n = notifications.evolve(n, event, n.id)
            assert before in TRANSITIONS[type(event)]
            recorded.append(event)
        assert n.status in set(notifications.Status)
        assert n.version == len(recorded)
        assert n.channel not in n.fallback
    codec = EventCodec(NOTIFICATION_EVENTS)
    decoded = [codec.decode(*codec.encode(e)) for e in recorded]
    assert decoded == recorded
    assert notifications.replay(n.id, recorded) == n
    assert notifications.replay(n.id, decoded) == n


@pytest.mark.parametrize(
    ("recipients", "field"),
    [
        ({}, "fallback_recipients.sms"),
        ({Channel.SMS: "not-a-number"}, "fallback_recipients.sms"),
        ({Channel.SMS: "+14155550100", Channel.PUSH: "d:1"}, "fallback_recipients.push"),
    ],
)
def test_each_fallback_channel_needs_an_address_of_its_own(
    recipients: dict[Channel, str], field: str
) -> None:
    def request() -> object:
        return notifications.request(
            tenant_id="t",
            channel=Channel.EMAIL,
            recipient="ada@example.com",
            content=EMAIL,
            priority=Priority.NORMAL,
            send_at=None,
            fallback=(Channel.SMS,),
            fallback_recipients=recipients,
            metadata={},
            idempotency_key=None,
            requested_by="sender",
            correlation_id=None,
            at=NOW,
        )

    assert _invalid(request) == field


def test_a_fallback_hop_moves_to_the_address_given_for_that_channel() -> None:
    n = notifications.replay(uuid.uuid4(), _requested(Channel.PUSH, (Channel.SMS,)))
    n = _apply(n, notifications.start_dispatch(n, provider="fcm", at=NOW))
    n = _apply(n, notifications.record_failure(n, reason="gone", permanent=True, at=NOW))
    n = _apply(n, notifications.fall_back(n, at=NOW))
    assert (n.channel, n.recipient, n.attempt) == (Channel.SMS, RECIPIENTS[Channel.SMS], 0)


def _held(n: Notification) -> ArchivedNotification:
    return ArchivedNotification(
        channel=n.channel,
        recipient=n.recipient,
        priority=n.priority,
        status=n.status,
        attempts=n.attempt,
        last_error=None,
        provider=n.provider,
        provider_message_id=n.provider_message_id,
        send_at=None,
        requested_at=NOW,
        scheduled_at=None,
        dispatched_at=NOW,
        sent_at=NOW,
        delivered_at=None,
        opened_at=None,
        failed_at=None,
        cancelled_at=None,
        dead_lettered_at=None,
        created_position=1,
    )


def test_only_a_final_notification_is_archived() -> None:
    with pytest.raises(IllegalTransitionError, match="requested"):
        notifications.archive(tenant_id="t", status=Status.REQUESTED, archive_path="a", at=NOW)
    archived = notifications.archive(tenant_id="t", status=Status.SENT, archive_path="a", at=NOW)
    n = _apply(_sent(), [archived])
    assert (n.status, n.version) == (Status.ARCHIVED, 4)


def test_a_restored_notification_is_a_record_whether_or_not_its_events_remain() -> None:
    sent = _sent()
    archived = notifications.archive(tenant_id="t", status=sent.status, archive_path="a", at=NOW)
    n = _apply(sent, [archived])
    back = notifications.restore(
        tenant_id="t", archived_version=n.version, held=_held(sent), archive_path="a", at=NOW
    )
    with_history = _apply(n, [back])
    # Its earlier events gone with retention, the stream holds the restore alone.
    alone = notifications.replay(sent.id, [back])
    for restored in (with_history, alone):
        assert (restored.status, restored.version, restored.restored) == ("sent", 5, True)
        assert restored.recipient == sent.recipient
        with pytest.raises(IllegalTransitionError, match="restored"):
            notifications.record_delivered(restored, at=NOW)
        assert notifications.erase(restored, by="x", at=NOW)
    stale = notifications.restore(
        tenant_id="t", archived_version=2, held=_held(sent), archive_path="a", at=NOW
    )
    with pytest.raises(IllegalTransitionError, match="version 3"):
        _apply(n, [stale])
