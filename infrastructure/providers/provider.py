"""The one small interface in front of every provider SDK, and the errors its adapters raise.

A provider sends one rendered message and returns the provider's message id, or raises
`ProviderError` saying whether trying again could help and, when the provider said so,
after how long. Calls are blocking (the SDKs are) and come from many threads at once.

Every message carries `notification_id:attempt` as its dedupe key, wherever the provider's
API has room for one, so the provider (and the simulator, which counts calls per key) can
tell a repeated call for one attempt from a new attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Generic, Protocol, TypeVar
from uuid import UUID

from domain.notifications.values import Channel


@dataclass(frozen=True)
class OutboundMessage:
    notification_id: UUID
    attempt: int
    tenant_id: str
    channel: Channel
    recipient: str
    subject: str | None  # email subject; push title
    body: str

    @property
    def dedupe_key(self) -> str:
        return f"{self.notification_id}:{self.attempt}"


class ProviderError(Exception):
    """The provider did not take the message. `permanent`: retrying the same cannot help."""

    def __init__(self, reason: str, *, permanent: bool, retry_after_s: float | None = None) -> None:
        self.reason = reason
        self.permanent = permanent
        self.retry_after_s = retry_after_s
        super().__init__(reason)


class Provider(Protocol):
    name: str  # "sendgrid", "twilio" or "fcm": the key of per-provider settings
    channel: Channel
    sandbox: bool  # True when the calls go to the provider simulator

    def send(self, message: OutboundMessage) -> str:
        """Hand the message to the provider; return its message id or raise ProviderError."""
        ...

    def close(self) -> None: ...


T = TypeVar("T")
MAX_REASON_CHARS = 160


class PerThread(Generic[T]):
    """One SDK client per thread, made on first use.

    The SDK clients keep per-request state (headers, sessions, the last response), so
    sharing one between the dispatcher's threads would mix their calls.
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._local = threading.local()
        self._lock = threading.Lock()
        self._made: list[T] = []

    def get(self) -> T:
        client: T | None = getattr(self._local, "client", None)
        if client is None:
            client = self._make()
            self._local.client = client
            with self._lock:
                self._made.append(client)
        return client

    def drain(self) -> list[T]:
        """Every client made so far, forgotten here: the caller closes them."""
        with self._lock:
            made, self._made = self._made, []
        return made


def is_transient_status(status: int) -> bool:
    return status >= HTTPStatus.INTERNAL_SERVER_ERROR or status in {
        HTTPStatus.REQUEST_TIMEOUT,
        HTTPStatus.TOO_MANY_REQUESTS,
    }


def retry_after_s(header: str | None) -> float | None:
    """A Retry-After header in its seconds form; None when absent or an HTTP date."""
    try:
        seconds = float(header) if header else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def brief(text: str) -> str:
    """Provider-supplied text made fit for a one-line reason."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "unexpected status"


def http_error(
    provider: str, status: int, detail: str | None, retry_after: str | None
) -> ProviderError:
    """An HTTP error answer: 5xx, 408 and 429 are worth retrying, any other 4xx is not."""
    if is_transient_status(status):
        return ProviderError(
            f"{provider} {status}: {status_phrase(status)}",
            permanent=False,
            retry_after_s=retry_after_s(retry_after),
        )
    return ProviderError(
        f"{provider} {status}: {brief(detail or status_phrase(status))}", permanent=True
    )


def timed_out(timeout_ms: int) -> ProviderError:
    return ProviderError(f"timed out after {timeout_ms} ms", permanent=False)


def unreachable(provider: str, exc: BaseException) -> ProviderError:
    """No HTTP answer at all; the reason names the socket error, never the URL (it may hold ids)."""
    return ProviderError(f"{provider} unreachable: {_socket_error(exc)}", permanent=False)


def _socket_error(exc: BaseException) -> str:
    # The SDKs wrap the OSError in their own errors (urllib's URLError, urllib3's
    # MaxRetryError and NewConnectionError, requests' ConnectionError): look inside.
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        pending += list(current.args)
    return type(exc).__name__
