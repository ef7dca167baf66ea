"""The simulator's state: its settings, its counts, and the webhooks it still owes.

Every provider's handler asks `Simulator.admit` how a call ends (accepted, repeated,
refused, or held until the caller times out) and `Simulator.post_later` to send a report.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar import Response

from infrastructure.log import get_logger
from infrastructure.providers.sandbox import FILE_NAME, SandboxCredentials
from infrastructure.settings import PROVIDERS, Settings

log = get_logger(__name__)
TIMEOUT_MARGIN_S = 5.0  # a "timed out" call is held this long past the caller's timeout
WEBHOOK_TRIES = 20
WEBHOOK_FIRST_BACKOFF_S = 0.2
WEBHOOK_MAX_BACKOFF_S = 5.0
# Webhook posts in flight at once. httpx's pool scans its whole queue for every request it
# assigns, so thousands of queued posts would cost more CPU than the posts themselves; the
# rest wait their turn on a semaphore instead.
WEBHOOK_CONCURRENCY = 32

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class SimulatorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What `PUT /_simulator/config` may change while the simulator runs."""

    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=60000)] = 0
    transient_rate: Rate = 0.0
    throttle_rate: Rate = 0.0
    timeout_rate: Rate = 0.0
    permanent_rate: Rate = 0.0
    webhook_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=600000)] = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> SimulatorConfig:
        return cls(
            latency_ms=settings.simulator_latency_ms,
            transient_rate=settings.simulator_transient_rate,
            throttle_rate=settings.simulator_throttle_rate,
            timeout_rate=settings.simulator_timeout_rate,
            permanent_rate=settings.simulator_permanent_rate,
            webhook_delay_ms=settings.simulator_webhook_delay_ms,
        )


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    REPEATED = "repeated"  # an accepted dedupe key again: the same id, nothing else happens
    TIMEOUT = "timeout"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    INVALID = "invalid"  # an invalid recipient
    UNSUBSCRIBED = "unsubscribed"
    UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class Admission:
    outcome: Outcome
    message_id: str = ""


class Simulator:
    """The simulator's state. Only the worker's event loop touches it, so no locks."""

    def __init__(self, settings: Settings, sandbox: SandboxCredentials) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.config = SimulatorConfig.from_settings(settings)
        key = serialization.load_pem_private_key(sandbox.fcm_private_key_pem.encode(), None)
        signing = serialization.load_pem_private_key(
            sandbox.sendgrid_signing_key_pem.encode(), None
        )
        if not isinstance(key, rsa.RSAPrivateKey) or not isinstance(
            signing, ec.EllipticCurvePrivateKey
        ):
            raise TypeError(f"{FILE_NAME} holds keys of the wrong kinds; delete it to renew it")
        self.token_key = key.public_key()
        self.signing_key = signing
        self.access_tokens: set[str] = set()
        self.http = httpx.AsyncClient(
            timeout=5.0, limits=httpx.Limits(max_connections=WEBHOOK_CONCURRENCY)
        )
        self._posting = asyncio.Semaphore(WEBHOOK_CONCURRENCY)
        self._webhooks: set[asyncio.Task[None]] = set()
        self.reset()

    def reset(self) -> None:
        """Forget every count and accepted key; webhooks not yet posted are dropped."""
        for task in self._webhooks:
            task.cancel()
        self.calls: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.message_ids: dict[str, str] = {}
        # Twilio keeps a record of each message until it is deleted: its Messages API reads
        # and deletes them by sid.
        self.twilio_messages: dict[str, dict[str, Any]] = {}
        self.by_provider = {name: Counter(calls=0, accepted=0, failed=0) for name in PROVIDERS}
        self.webhooks = Counter(posted=0, acknowledged=0, failed=0)

    def stats(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "accepted": dict(self.accepted),
            "by_provider": {name: dict(counts) for name, counts in self.by_provider.items()},
            "webhooks": {**self.webhooks, "pending": len(self._webhooks)},
            "twilio_messages": len(self.twilio_messages),
        }

    async def admit(
        self, provider: str, key: str | None, refusal: Outcome | None, new_id: Callable[[], str]
    ) -> Admission:
        """Count the call, wait the latency, then accept it, repeat an earlier answer or fail."""
        counts = self.by_provider[provider]
        counts["calls"] += 1
        if key:
            self.calls[key] += 1
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        # From here to the return nothing awaits, so two calls with one key cannot both pass.
        if key and key in self.message_ids:
            return Admission(Outcome.REPEATED, self.message_ids[key])
        outcome = refusal or self._draw()
        if outcome is not Outcome.ACCEPTED:
            counts["failed"] += 1
            log.debug("call refused", provider=provider, key=key, outcome=outcome.value)
            if outcome is Outcome.TIMEOUT:
                await asyncio.sleep(self.settings.provider_timeout_ms / 1000 + TIMEOUT_MARGIN_S)
            return Admission(outcome)
        message_id = new_id()
        counts["accepted"] += 1
        if key:
            self.accepted[key] += 1
            self.message_ids[key] = message_id
        log.debug("call accepted", provider=provider, key=key, message_id=message_id)
        return Admission(Outcome.ACCEPTED, message_id)

    def _draw(self) -> Outcome:
        roll = random.random()  # noqa: S311 - failure injection, not cryptography
        for outcome, rate in (
            (Outcome.TIMEOUT, self.config.timeout_rate),
            (Outcome.THROTTLED, self.config.throttle_rate),
            (Outcome.TRANSIENT, self.config.transient_rate),
            (Outcome.INVALID, self.config.permanent_rate),
        ):
            if roll < rate:
                return outcome
            roll -= rate
        return Outcome.ACCEPTED

    def post_later(
        self, url: str, body: Callable[[], bytes], sign: Callable[[bytes], dict[str, str]]
    ) -> None:
        """Post a webhook after the configured delay, without holding up the send's answer.

        `body` is made once, when the delay is over; `sign` gives the headers of each try,
        so a retry carries a fresh signature timestamp, as a provider's would.
        """
        task = asyncio.get_running_loop().create_task(self._post(url, body, sign))
        self._webhooks.add(task)
        task.add_done_callback(self._webhooks.discard)

    async def _post(
        self, url: str, body: Callable[[], bytes], sign: Callable[[bytes], dict[str, str]]
    ) -> None:
        await asyncio.sleep(self.config.webhook_delay_ms / 1000)
        content = body()
        backoff = WEBHOOK_FIRST_BACKOFF_S
        for _ in range(WEBHOOK_TRIES):
            try:
                async with self._posting:
                    self.webhooks["posted"] += 1
                    response = await self.http.post(url, content=content, headers=sign(content))
                acknowledged = response.is_success
            except httpx.HTTPError:
                acknowledged = False
            if acknowledged:
                self.webhooks["acknowledged"] += 1
                return
            self.webhooks["failed"] += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, WEBHOOK_MAX_BACKOFF_S)
        log.warning("webhook abandoned", url=url.partition("?")[0], tries=WEBHOOK_TRIES)

    async def close(self) -> None:
        for task in self._webhooks:
            task.cancel()
        await self.http.aclose()


def json_response(status: int, body: object, retry: bool = False) -> Response[Any]:
    headers = {"Retry-After": "1"} if retry else None
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def held() -> Response[Any]:
    return Response(b"", status_code=504)  # nobody waits for it any more
