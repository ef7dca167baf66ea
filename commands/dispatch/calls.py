"""Provider calls as the dispatcher makes them: past the circuit breaker, within the provider's
concurrency cap and shared rate, rendered, timed, and turned into an `Outcome`."""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import redis.asyncio
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind

from domain.notifications.events import NotificationRequested
from domain.notifications.notification import Notification
from domain.notifications.rendering import RenderError, render
from infrastructure.log import get_logger
from infrastructure.metrics import CIRCUIT_OPEN, DISPATCH_ATTEMPTS, PROVIDER_DURATION
from infrastructure.privacy.cipher import ERASED
from infrastructure.providers.protection import Admission, CircuitBreaker, PriorityLimiter
from infrastructure.providers.provider import OutboundMessage, Provider, ProviderError
from infrastructure.rate_limit import RateLimiter, Tier
from infrastructure.template_files import TemplateDirectory
from infrastructure.tracing import impersonal_span, in_recorded_span, start_span

log = get_logger(__name__)

Verdict = Literal["ok", "failed", "refused"]  # for the breaker: refusals say nothing of health


@dataclass
class Outcome:
    """A provider's answer to one attempt: its message id, or why it failed."""

    provider_message_id: str | None = None
    reason: str = ""
    permanent: bool = False
    retry_after: timedelta | None = None


class ProviderCalls:
    def __init__(
        self,
        *,
        breaker: CircuitBreaker,
        rate: RateLimiter,
        rates_per_s: dict[str, int],
        concurrency: dict[str, int],
        executor: ThreadPoolExecutor,
        templates: TemplateDirectory,
        budget_s: float,
    ) -> None:
        self._breaker = breaker
        self._rate = rate
        self._tiers = {name: Tier(per_s, 1) for name, per_s in rates_per_s.items()}
        self._limits = {name: PriorityLimiter(n) for name, n in concurrency.items()}
        self._executor = executor
        self._templates = templates
        self._budget_s = budget_s
        self._rng = random.Random()  # noqa: S311 - jitter, not secrecy

    async def admit(self, provider: str) -> Admission:
        """Whether the provider's circuit lets a call through now, and if as a probe."""
        admission = await self._breaker.admit(provider)
        CIRCUIT_OPEN.labels(provider).set(0 if admission.admitted else 1)
        return admission

    @asynccontextmanager
    async def slot(self, provider: str, rank: int) -> AsyncIterator[None]:
        """Hold one of the provider's concurrency slots (most urgent waiter first) and one
        token of its shared rate: a call may go once this is entered."""
        limiter = self._limits[provider]
        await limiter.acquire(rank)
        try:
            await self._within_rate(provider)
            yield
        finally:
            limiter.release()

    async def attempt(
        self,
        provider: Provider,
        n: Notification,
        requested: NotificationRequested,
        *,
        probe: bool,
    ) -> Outcome:
        """Render and call; the caller holds the provider's slot."""
        if ERASED in (n.recipient, requested.content.body, requested.content.subject):
            # Sealed under a key since destroyed: there is no one, and nothing, to send.
            return Outcome(reason="the recipient's personal data was erased", permanent=True)
        try:
            rendered = render(requested.content, self._templates)
        except RenderError as exc:
            await self._note(provider.name, "refused", probe=probe)
            return Outcome(reason=str(exc), permanent=True)
        message = OutboundMessage(
            notification_id=n.id,
            attempt=n.attempt,
            tenant_id=n.tenant_id,
            channel=n.channel,
            recipient=n.recipient,
            subject=rendered.subject,
            body=rendered.body,
        )
        started = time.perf_counter()
        outcome, verdict = await self._call(provider, message)
        channel = n.channel.value
        PROVIDER_DURATION.labels(provider.name, channel).observe(time.perf_counter() - started)
        DISPATCH_ATTEMPTS.labels(provider.name, channel, verdict).inc()
        await self._note(provider.name, verdict, probe=probe)
        return outcome

    async def _note(self, provider: str, verdict: Verdict, *, probe: bool) -> None:
        """Tell the breaker how a call went. Best effort: the answer in hand matters more."""
        try:
            await self._breaker.record(provider, verdict, probe=probe)
        except redis.RedisError as exc:
            log.warning("could not update the circuit breaker", provider=provider, error=str(exc))

    async def _within_rate(self, provider: str) -> None:
        tier = self._tiers[provider]
        while True:
            decision = await self._rate.hit(provider, [tier])
            if decision.allowed:
                return
            await asyncio.sleep(min(max(decision.reset_s, 0.01), 1.0) * self._rng.random() + 0.01)

    async def _call(self, provider: Provider, message: OutboundMessage) -> tuple[Outcome, Verdict]:
        loop = asyncio.get_running_loop()
        budget_s = self._budget_s
        span = _call_span(provider.name, message) if in_recorded_span() else INVALID_SPAN
        try:
            with impersonal_span(span):
                # The SDK's HTTP call, in the executor's thread, is a child of this span.
                call = contextvars.copy_context().run
                message_id = await asyncio.wait_for(
                    loop.run_in_executor(self._executor, call, provider.send, message), budget_s
                )
        except ProviderError as exc:
            retry_after = (
                timedelta(seconds=exc.retry_after_s) if exc.retry_after_s is not None else None
            )
            outcome = Outcome(reason=exc.reason, permanent=exc.permanent, retry_after=retry_after)
            return outcome, "refused" if exc.permanent else "failed"
        except TimeoutError:
            return Outcome(reason=f"{provider.name}: no answer within {budget_s:.0f} s"), "failed"
        except Exception as exc:  # an SDK's own bug must cost one attempt, not the dispatcher
            log.exception("provider call raised", provider=provider.name)
            return Outcome(reason=f"{provider.name}: {type(exc).__name__}"), "failed"
        return Outcome(provider_message_id=message_id), "ok"


def _call_span(provider: str, message: OutboundMessage) -> Span:
    """The provider call's span, a child of the attempt's; marked failed when it raises."""
    return start_span(
        "provider.send",
        parent=None,
        kind=SpanKind.CLIENT,
        attributes={
            "herald.provider": provider,
            "herald.channel": message.channel.value,
            "herald.notification_id": str(message.notification_id),
            "herald.attempt": message.attempt,
        },
    )
