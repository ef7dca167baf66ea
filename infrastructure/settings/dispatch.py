"""Settings of the dispatchers: attempts and retry delays, provider call budgets, concurrency
and rates, circuit breakers and leases."""

from __future__ import annotations

from typing import Annotated

from domain.notifications.values import Priority
from infrastructure.settings.providers import PROVIDERS, ProviderSettings
from infrastructure.settings.values import (
    SettingsError,
    env_name,
    example_of,
    parse_per_key,
    setting,
)


class DispatchSettings(ProviderSettings, frozen=True, kw_only=True):
    dispatch_max_attempts: Annotated[
        str,
        setting(
            "Most send attempts per channel, by priority.",
            "critical=8,high=6,normal=5,low=3",
        ),
    ] = "critical=8,high=6,normal=5,low=3"
    retry_base_ms: Annotated[
        int,
        setting(
            "First retry delay; each later one doubles, with full jitter, in ms.",
            "1000",
            ge=1,
            le=3600000,
        ),
    ] = 1000
    retry_max_ms: Annotated[
        int, setting("Longest retry delay, in ms.", "300000", ge=1, le=86400000)
    ] = 300_000
    provider_timeout_ms: Annotated[
        int, setting("How long one provider call may take, in ms.", "10000", ge=100, le=120000)
    ] = 10_000
    provider_concurrency: Annotated[
        str,
        setting(
            "Most provider calls in flight at once, per dispatcher process and provider.",
            "sendgrid=32,twilio=32,fcm=32",
        ),
    ] = "sendgrid=32,twilio=32,fcm=32"
    provider_rate_limits: Annotated[
        str,
        setting(
            "Most provider calls per second, per provider, shared by every dispatcher.",
            "sendgrid=2000,twilio=2000,fcm=2000",
        ),
    ] = "sendgrid=2000,twilio=2000,fcm=2000"
    breaker_error_rate: Annotated[
        float,
        setting(
            "Share of failed calls in the breaker window that opens a provider's circuit.",
            "0.5",
            gt=0.0,
            le=1.0,
        ),
    ] = 0.5
    breaker_min_calls: Annotated[
        int,
        setting(
            "Fewest calls in the window before the error rate can open the circuit.",
            "20",
            ge=1,
            le=100000,
        ),
    ] = 20
    breaker_window_s: Annotated[
        int, setting("Length of the breaker's error-rate window, in s.", "30", ge=1, le=3600)
    ] = 30
    breaker_open_s: Annotated[
        int,
        setting(
            "How long an open circuit refuses calls before half-open probes, in s.",
            "15",
            ge=1,
            le=3600,
        ),
    ] = 15
    dispatch_sweep_s: Annotated[
        int,
        setting(
            "How often a dispatcher queues notifications still to send that the broker never "
            "announced to it, once they are that many seconds old: the safety net under Kafka. "
            "Keep it well above the longest an attempt takes: a notification in flight longer "
            "may be queued again and its attempt resumed, so called twice.",
            "30",
            ge=1,
            le=3600,
        ),
    ] = 30
    dispatch_lease_s: Annotated[
        int,
        setting(
            "How long a dispatcher holds a notification it took; after that another may take "
            "it. Must exceed HERALD_PROVIDER_TIMEOUT_MS.",
            "60",
            ge=5,
            le=3600,
        ),
    ] = 60

    def check_dispatch(self) -> None:
        for name, keys in (
            ("dispatch_max_attempts", [str(p) for p in Priority]),
            ("provider_concurrency", list(PROVIDERS)),
            ("provider_rate_limits", list(PROVIDERS)),
        ):
            try:
                parse_per_key(getattr(self, name), keys)
            except ValueError as exc:
                raise SettingsError(
                    env_name(name), f"is invalid: {exc}", example_of(DispatchSettings, name)
                ) from None
        if self.dispatch_sweep_s * 1000 <= self.provider_timeout_ms:
            raise SettingsError(
                "HERALD_DISPATCH_SWEEP_S",
                f"must exceed HERALD_PROVIDER_TIMEOUT_MS ({self.provider_timeout_ms} ms)",
                "30",
            )
        if self.dispatch_lease_s * 1000 <= self.provider_timeout_ms:
            raise SettingsError(
                "HERALD_DISPATCH_LEASE_S",
                f"must exceed HERALD_PROVIDER_TIMEOUT_MS ({self.provider_timeout_ms} ms)",
                str(self.provider_timeout_ms // 1000 * 2 + 5),
            )

    @property
    def max_attempts(self) -> dict[Priority, int]:
        return {Priority(k): v for k, v in parse_per_key(self.dispatch_max_attempts, []).items()}

    @property
    def concurrency_per_provider(self) -> dict[str, int]:
        return parse_per_key(self.provider_concurrency, [])

    @property
    def rate_limit_per_provider(self) -> dict[str, int]:
        return parse_per_key(self.provider_rate_limits, [])
