"""What a dispatcher does next: jittered capped retries, fallback, dead letters, templates."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.notifications import notification as notifications
from domain.notifications.dispatch_policy import (
    Done,
    Record,
    Resend,
    RetryPolicy,
    Send,
    WaitUntil,
    next_step,
)
from domain.notifications.events import (
    ChannelFallenBack,
    NotificationDeadLettered,
    NotificationEvent,
    RetryScheduled,
)
from domain.notifications.notification import IllegalTransitionError, Notification, Status
from domain.notifications.rendering import RenderError, Template, render
from domain.notifications.values import Channel, Content, Priority

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(
    max_attempts={Priority.CRITICAL: 4, Priority.HIGH: 3, Priority.NORMAL: 2, Priority.LOW: 1},
    base=timedelta(seconds=1),
    cap=timedelta(seconds=30),
)
RNG = random.Random(7)


def _notification(
    priority: Priority = Priority.NORMAL,
    fallback: tuple[Channel, ...] = (),
    send_at: datetime | None = None,
) -> Notification:
    events = notifications.request(
        tenant_id="t",
        channel=Channel.PUSH,
        recipient="device-1",
        content=Content(subject="Hi", body="Hello"),
        priority=priority,
        send_at=send_at,
        fallback=fallback,
        fallback_recipients={
            c: {"sms": "+14155550100", "email": "ada@example.com"}[c] for c in fallback
        },
        metadata={},
        idempotency_key=None,
        requested_by="sender",
        correlation_id=None,
        at=NOW,
    )
    return _apply(None, events)


def _apply(n: Notification | None, events: list[NotificationEvent]) -> Notification:
    nid = n.id if n else uuid.uuid4()
    for event in events:
        n = notifications.evolve(n, event, nid)
    assert n is not None
    return n


def _fail(n: Notification, *, permanent: bool) -> Notification:
    n = _apply(n, notifications.start_dispatch(n, provider="fcm", at=NOW))
    return _apply(n, notifications.record_failure(n, reason="fcm 503", permanent=permanent, at=NOW))


def _decide(n: Notification, retry_after: timedelta | None = None) -> Notification:
    step = next_step(n, POLICY, now=NOW, rng=RNG, retry_after=retry_after)
    assert isinstance(step, Record), step
    return _apply(n, step.events)


def test_a_requested_notification_is_sent_now_and_a_scheduled_one_waits() -> None:
    assert next_step(_notification(), POLICY, now=NOW, rng=RNG) == Send()
    later = NOW + timedelta(hours=1)
    assert next_step(_notification(send_at=later), POLICY, now=NOW, rng=RNG) == WaitUntil(later)


def test_an_attempt_never_recorded_is_repeated_once_its_dispatcher_must_be_gone() -> None:
    n = _notification()
    n = _apply(n, notifications.start_dispatch(n, provider="fcm", at=NOW))
    presumed_lost = NOW + POLICY.resend_after
    # Its dispatcher may still be waiting for the provider: nobody else calls meanwhile.
    assert next_step(n, POLICY, now=NOW, rng=RNG) == WaitUntil(presumed_lost)
    almost = presumed_lost - timedelta(milliseconds=1)
    assert next_step(n, POLICY, now=almost, rng=RNG) == WaitUntil(presumed_lost)
    # Then the same attempt is repeated (same dedupe key), not a new one started.
    assert next_step(n, POLICY, now=presumed_lost, rng=RNG) == Resend()
    resumed = _apply(n, notifications.resume_dispatch(n, provider="fcm", at=presumed_lost))
    assert (resumed.attempt, resumed.status) == (1, n.status)
    # The resumed attempt is fresh again: nobody repeats it while it may be in flight.
    later = presumed_lost + POLICY.resend_after
    assert next_step(resumed, POLICY, now=presumed_lost, rng=RNG) == WaitUntil(later)


def test_only_the_open_attempt_can_be_resumed() -> None:
    n = _notification()
    with pytest.raises(IllegalTransitionError):
        notifications.resume_dispatch(n, provider="fcm", at=NOW)  # nothing started yet
    n = _apply(n, notifications.start_dispatch(n, provider="fcm", at=NOW))
    n = _apply(n, notifications.record_sent(n, provider_message_id="m-1", at=NOW))
    with pytest.raises(IllegalTransitionError):
        notifications.resume_dispatch(n, provider="fcm", at=NOW)  # answered already


def test_transient_failures_retry_until_the_priority_runs_out_of_attempts() -> None:
    n = _notification(Priority.NORMAL)  # two attempts
    n = _decide(_fail(n, permanent=False))
    assert n.status is Status.RETRY_SCHEDULED
    assert n.retry_at is not None
    assert NOW <= n.retry_at <= NOW + POLICY.base
    n = _decide(_fail(n, permanent=False))
    assert n.status is Status.DEAD_LETTERED
    assert n.last_error == "gave up after 2 attempts on push: fcm 503"


def test_retry_after_is_a_floor_under_the_backoff() -> None:
    # The first backoff is at most one second; the provider asked for twenty.
    n = _decide(_fail(_notification(), permanent=False), retry_after=timedelta(seconds=20))
    assert n.retry_at == NOW + timedelta(seconds=20)


def test_a_permanent_failure_is_never_retried() -> None:
    n = _decide(_fail(_notification(Priority.CRITICAL), permanent=True))
    assert n.status is Status.DEAD_LETTERED
    assert n.last_error == "failed permanently on push: fcm 503"


def test_fallback_walks_the_channels_in_order_then_dead_letters() -> None:
    n = _notification(fallback=(Channel.SMS, Channel.EMAIL))
    hops = []
    for _ in range(3):
        failed = _fail(n, permanent=True)
        step = next_step(failed, POLICY, now=NOW, rng=RNG)
        assert isinstance(step, Record)
        hops.append(type(step.events[0]))
        n = _apply(failed, step.events)
        if n.status is Status.REQUESTED:
            assert next_step(n, POLICY, now=NOW, rng=RNG) == Send()
    assert hops == [ChannelFallenBack, ChannelFallenBack, NotificationDeadLettered]
    assert (n.channel, n.recipient) == (Channel.EMAIL, "ada@example.com")


def test_exhausted_retries_fall_back_before_giving_up() -> None:
    n = _notification(Priority.LOW, fallback=(Channel.SMS,))  # one attempt per channel
    n = _decide(_fail(n, permanent=False))
    assert (n.status, n.channel, n.attempt) == (Status.REQUESTED, Channel.SMS, 0)


def test_nothing_is_left_once_sent() -> None:
    n = _notification()
    n = _apply(n, notifications.start_dispatch(n, provider="fcm", at=NOW))
    n = _apply(n, notifications.record_sent(n, provider_message_id="m-1", at=NOW))
    assert next_step(n, POLICY, now=NOW, rng=RNG) == Done()


@given(attempt=st.integers(min_value=1, max_value=200), seed=st.integers())
def test_backoff_is_jittered_within_a_doubling_capped_ceiling(attempt: int, seed: int) -> None:
    delay = POLICY.delay(attempt, random.Random(seed))
    ceiling = min(POLICY.cap, POLICY.base * 2 ** min(attempt - 1, 40))
    assert timedelta(0) <= delay <= ceiling


def test_retry_events_name_the_next_attempt() -> None:
    n = _fail(_notification(Priority.HIGH), permanent=False)
    step = next_step(n, POLICY, now=NOW, rng=RNG)
    assert isinstance(step, Record)
    assert isinstance(step.events[0], RetryScheduled)
    assert step.events[0].attempt == 2


TEMPLATES = {"welcome": Template(subject="Welcome, $name", body="Hello ${name}, code $code.")}


def test_templates_fill_their_variables() -> None:
    content = Content(template_id="welcome", variables={"name": "Ada", "code": "42"})
    rendered = render(content, TEMPLATES)
    assert (rendered.subject, rendered.body) == ("Welcome, Ada", "Hello Ada, code 42.")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            Content(template_id="welcome", variables={"name": "Ada"}),
            "template 'welcome' needs variable 'code', which was not given",
        ),
        (Content(template_id="nope"), "template 'nope' does not exist"),
    ],
)
def test_a_template_that_cannot_be_filled_says_why(content: Content, reason: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(content, TEMPLATES)
    assert str(caught.value) == reason


def test_a_literal_body_is_sent_as_it_is() -> None:
    rendered = render(Content(subject="S", body="B $x"), TEMPLATES)
    assert (rendered.subject, rendered.body) == ("S", "B $x")
