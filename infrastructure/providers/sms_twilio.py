"""SMS through Twilio's Messages API, with the official SDK.

Twilio has no field for our ids, so they ride in the status callback URL's query: Twilio
posts each delivery status there, and the query names the notification and the attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import requests
from twilio.base.exceptions import (  # type: ignore[import-untyped]
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

from domain.notifications.values import Channel
from infrastructure.providers.provider import (
    OutboundMessage,
    PerThread,
    ProviderError,
    brief,
    http_error,
    is_transient_status,
    timed_out,
    unreachable,
)

# Texts for the common refusals; any other code carries Twilio's own message.
KNOWN_CODES = {
    21211: "invalid 'To' number",
    21610: "recipient unsubscribed",
    21614: "'To' number is not a mobile number",
}

# The SDK narrates every request at INFO (method, URL, headers); Herald logs its own lines.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)


class _HttpClient(TwilioHttpClient):  # type: ignore[misc]
    """The SDK's HTTP client, keeping the last answer's headers: its errors drop them, and a
    429 or 503 may say in Retry-After when to come back."""

    last_headers: Mapping[str, str] = {}

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.last_headers = {}
        response = super().request(*args, **kwargs)
        self.last_headers = response.headers or {}
        return response


class TwilioProvider:
    name = "twilio"
    channel = Channel.SMS

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        public_url: str,
        timeout_ms: int,
        base_url: str | None = None,
    ) -> None:
        """`base_url` None: Twilio itself; else the provider simulator (the sandbox)."""
        self.sandbox = base_url is not None
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._sender = sender
        self._callback_url = f"{public_url.rstrip('/')}/webhooks/twilio"
        self._timeout_ms = timeout_ms
        self._base_url = base_url
        self._clients = PerThread(self._new_client)

    def _new_client(self) -> tuple[Any, _HttpClient]:
        http = _HttpClient(timeout=self._timeout_ms / 1000)
        client = Client(self._account_sid, self._auth_token, http_client=http)
        if self._base_url is not None:
            # Messages live on the `api` domain; its base URL is public and read per request.
            client.api.base_url = self._base_url
        return client, http

    def send(self, message: OutboundMessage) -> str:
        client, http = self._clients.get()
        query = urlencode({"notification_id": message.notification_id, "attempt": message.attempt})
        try:
            created = client.messages.create(
                to=message.recipient,
                from_=self._sender,
                body=message.body,
                status_callback=f"{self._callback_url}?{query}",
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _error(exc, http.last_headers) from None
        except requests.Timeout:
            raise timed_out(self._timeout_ms) from None
        except requests.RequestException as exc:
            raise unreachable(self.name, exc) from None
        return str(created.sid)

    def delete_message(self, message_id: str) -> bool:
        """Delete Twilio's record of a message (its body and numbers); False when Twilio has
        none by that id, deleted already. ProviderError when Twilio cannot be asked now."""
        client, http = self._clients.get()
        try:
            return bool(client.messages(message_id).delete())
        except (TwilioRestException, TwilioServiceException) as exc:
            if int(exc.status) == 404:  # noqa: PLR2004 - gone already
                return False
            raise _error(exc, http.last_headers) from None
        except requests.Timeout:
            raise timed_out(self._timeout_ms) from None
        except requests.RequestException as exc:
            raise unreachable(self.name, exc) from None

    def close(self) -> None:
        for _, http in self._clients.drain():
            if http.session is not None:
                http.session.close()


def _error(exc: Any, headers: Mapping[str, str]) -> ProviderError:
    status, code = int(exc.status), exc.code
    if is_transient_status(status) or not isinstance(code, int) or code == status:
        return http_error("twilio", status, _message(exc), headers.get("Retry-After"))
    return ProviderError(f"twilio {code}: {KNOWN_CODES.get(code) or _message(exc)}", permanent=True)


def _message(exc: Any) -> str:
    if isinstance(exc, TwilioServiceException):
        return brief(str(exc.detail or exc.title))
    # The SDK prefixes the API's message with what it tried: "Unable to create record: ..."
    return brief(str(exc.msg).partition(": ")[2] or str(exc.msg))
