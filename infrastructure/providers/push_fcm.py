"""Push through Firebase Cloud Messaging's HTTP v1 API, with the official Admin SDK.

The message's ids ride in its data payload, with a receipt token: FCM posts no delivery
callback, so the app reports arrival itself (infrastructure.providers.push_receipts).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import firebase_admin  # type: ignore[import-untyped]
import google.auth.exceptions
import requests
from firebase_admin import credentials, messaging
from firebase_admin.exceptions import FirebaseError  # type: ignore[import-untyped]
from requests.adapters import HTTPAdapter

from domain.notifications.values import Channel
from infrastructure.providers import push_receipts
from infrastructure.providers.provider import (
    OutboundMessage,
    PerThread,
    ProviderError,
    brief,
    is_transient_status,
    retry_after_s,
    timed_out,
    unreachable,
)

# FCM's errorCode values that mean "this token will never take this message".
KNOWN_CODES = {
    "UNREGISTERED": "device token no longer registered",
    "INVALID_ARGUMENT": "invalid message or device token",
    "SENDER_ID_MISMATCH": "device token belongs to another sender",
    "QUOTA_EXCEEDED": "sending quota exceeded",
    "UNAVAILABLE": "service unavailable",
    "INTERNAL": "internal error",
    "THIRD_PARTY_AUTH_ERROR": "APNs or web push credentials refused",
}
_app_numbers = itertools.count(1)
_TEN_YEARS = timedelta(days=3650)


def _naive_utc() -> datetime:
    """Now, as google-auth's clock reads it: UTC without a timezone."""
    return datetime.now(UTC).replace(tzinfo=None)


class FcmProvider:
    name = "fcm"
    channel = Channel.PUSH

    def __init__(
        self,
        *,
        service_account: dict[str, Any],
        timeout_ms: int,
        receipt_key: bytes | None,
        send_url: str | None = None,
    ) -> None:
        """`send_url` None: FCM itself; else the provider simulator's send URL (the sandbox).

        `receipt_key` signs the receipt token each push carries for the app to post back
        (infrastructure.providers.push_receipts); None sends pushes without one.
        """
        self.sandbox = send_url is not None
        self._receipt_key = receipt_key
        self._service_account = service_account
        self._timeout_ms = timeout_ms
        self._send_url = send_url
        self._apps = PerThread(self._new_app)

    def _new_app(self) -> Any:
        app = firebase_admin.initialize_app(
            credentials.Certificate(self._service_account),
            {"httpTimeout": self._timeout_ms / 1000},
            name=f"herald-fcm-{id(self)}-{next(_app_numbers)}",
        )
        # firebase-admin 7.7.0 keeps the send URL and the HTTP session on a private service
        # object, and offers no option for either. Herald retries with its own back-off and
        # circuit breaker, so the SDK's urllib3 retries (up to four more calls on a 503, one
        # on a read timeout) are switched off; in the sandbox the URL points at the simulator.
        # tests/integration/test_providers.py fails if a later version moves them.
        service = messaging._get_messaging_service(app)
        no_retries = HTTPAdapter(max_retries=0)
        for prefix in ("http://", "https://", "https://fcm.googleapis.com"):
            service._client.session.mount(prefix, no_retries)
        if self._send_url is not None:
            service._fcm_url = self._send_url
            # google-auth would look up the service account's regional access boundary at
            # iamcredentials.googleapis.com, in a background thread, for every app. The
            # sandbox has no such boundary: give it the "no boundary" value up front.
            boundary = {"encodedLocations": "0x0", "expiry": _naive_utc() + _TEN_YEARS}
            app.credential.get_credential()._set_regional_access_boundary(boundary)
        return app

    def send(self, message: OutboundMessage) -> str:
        data = {
            "herald_notification_id": str(message.notification_id),
            "herald_attempt": str(message.attempt),
            "herald_dedupe_key": message.dedupe_key,
        }
        if self._receipt_key is not None:
            data["herald_receipt"] = push_receipts.sign(
                self._receipt_key, message.notification_id, message.attempt
            )
        push = messaging.Message(
            # A registration token, which is what Herald stores. firebase-admin 7.7 deprecates
            # the field in favour of installation ids (`fid`); FCM v1 still takes both.
            token=message.recipient,
            notification=messaging.Notification(title=message.subject, body=message.body),
            data=data,
        )
        try:
            name = messaging.send(push, app=self._apps.get())
        except FirebaseError as exc:
            raise self._error(exc) from None
        except google.auth.exceptions.TransportError as exc:  # fetching the OAuth token
            raise self._no_answer(exc) from None
        except google.auth.exceptions.RefreshError as exc:
            retryable = bool(getattr(exc, "retryable", False))
            raise ProviderError("fcm: OAuth token refused", permanent=not retryable) from None
        return str(name)

    def _error(self, exc: FirebaseError) -> ProviderError:
        response = exc.http_response
        if response is None:
            return self._no_answer(exc.cause or exc)
        status = int(response.status_code)
        code = _error_code(response) or str(exc.code).upper()
        transient = is_transient_status(status)
        return ProviderError(
            f"fcm {code}: {KNOWN_CODES.get(code) or brief(str(exc))}",
            permanent=not transient,
            retry_after_s=retry_after_s(response.headers.get("Retry-After")) if transient else None,
        )

    def _no_answer(self, exc: BaseException) -> ProviderError:
        causes = (exc, exc.__cause__, *exc.args)
        if any(isinstance(cause, requests.Timeout) for cause in causes):
            return timed_out(self._timeout_ms)
        return unreachable(self.name, exc)

    def close(self) -> None:
        for app in self._apps.drain():
            firebase_admin.delete_app(app)


def _error_code(response: requests.Response) -> str | None:
    """The errorCode of FCM's error body: {"error": {"details": [{"errorCode": ...}]}}."""
    try:
        details = response.json()["error"]["details"]
        return next(str(d["errorCode"]) for d in details if "errorCode" in d)
    except (ValueError, KeyError, TypeError, StopIteration):
        return None
