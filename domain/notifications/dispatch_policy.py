"""What a dispatcher does next with a notification, decided from its state alone.

The dispatcher asks `next_step` whenever it holds a notification. The answer is to send
the next attempt now, to wait until a time, to record the consequence of a failure (retry,
fall back to the next channel, or give up), or that nothing is left to do.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.notifications import notification as notifications
from domain.notifications.events import NotificationEvent
from domain.notifications.notification import Notification, Status
from domain.notifications.values import Priority

PRIORITY_RANK: dict[Priority, int] = {
    Priority.CRITICAL: 0,
    Priority.HIGH: 1,
    Priority.NORMAL: 2,
    Priority.LOW: 3,
}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: Mapping[Priority, int]  # per channel: a fallback hop starts counting again
    base: timedelta
    cap: timedelta
    # An attempt started this long ago without an outcome is presumed lost with its
    # dispatcher, and repeated. It must exceed the longest a live dispatcher can take from
    # DispatchStarted to recording the provider's answer.
    resend_after: timedelta = timedelta(minutes=1)

    def delay(self, attempt: int, rng: random.Random) -> timedelta:
        """Full jitter: uniform over [0, base * 2^(attempt - 1)], capped."""
        ceiling: timedelta = min(self.cap, self.base * (2 ** min(attempt - 1, 40)))
        return ceiling * rng.random()


@dataclass(frozen=True)
class Send:
    """Start the next attempt now."""


@dataclass(frozen=True)
class Resend:
    """An attempt was started long ago and its outcome never recorded: repeat it."""


@dataclass(frozen=True)
class WaitUntil:
    due: datetime


@dataclass(frozen=True)
class Record:
    events: list[NotificationEvent]


@dataclass(frozen=True)
class Done:
    """Nothing is left for a dispatcher: sent, or ended."""


Step = Send | Resend | WaitUntil | Record | Done


def next_step(
    n: Notification,
    policy: RetryPolicy,
    *,
    now: datetime,
    rng: random.Random,
    retry_after: timedelta | None = None,
) -> Step:
    match n.status:
        case Status.REQUESTED | Status.SCHEDULED | Status.RETRY_SCHEDULED:
            # Sent at the time asked for, not early: the tolerance that lets a request's
            # send_at be "now" does not apply to a schedule already recorded.
            due = due_at(n)
            if due is not None and now < due:
                return WaitUntil(due)
            return Send()
        case Status.DISPATCHING:
            started = n.dispatch_started_at
            if started is not None and now < started + policy.resend_after:
                return WaitUntil(started + policy.resend_after)  # its dispatcher may be alive
            return Resend()
        case Status.FAILED | Status.BOUNCED:
            return Record(after_failure(n, policy, now=now, rng=rng, retry_after=retry_after))
    return Done()


def due_at(n: Notification) -> datetime | None:
    return n.retry_at if n.status is Status.RETRY_SCHEDULED else n.send_at


def after_failure(
    n: Notification,
    policy: RetryPolicy,
    *,
    now: datetime,
    rng: random.Random,
    retry_after: timedelta | None = None,
) -> list[NotificationEvent]:
    """Retry a transient failure while attempts remain; else the next channel, else give up.

    A provider's Retry-After is a floor under the backoff, never shortened by jitter.
    """
    transient = n.status is Status.FAILED and not n.last_failure_permanent
    if transient and n.attempt < policy.max_attempts[n.priority]:
        delay = max(policy.delay(n.attempt, rng), retry_after or timedelta(0))
        return notifications.schedule_retry(n, retry_at=now + delay, at=now)
    if n.fallback:
        return notifications.fall_back(n, at=now)
    return notifications.dead_letter(n, reason=_why_given_up(n, transient), at=now)


def _why_given_up(n: Notification, transient: bool) -> str:
    last = n.last_error or "no reason given"
    if transient:
        return f"gave up after {n.attempt} attempts on {n.channel}: {last}"
    if n.status is Status.BOUNCED:
        return f"bounced on {n.channel}: {last}"
    return f"failed permanently on {n.channel}: {last}"
