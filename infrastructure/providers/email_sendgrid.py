"""Email through SendGrid's v3 Mail Send API, with the official SDK.

The message's ids ride along as custom args, which SendGrid echoes in every Event Webhook
event: that is how a delivery or a bounce finds its notification again.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError  # type: ignore[import-untyped]
from sendgrid import SendGridAPIClient  # type: ignore[import-untyped]
from sendgrid.helpers.mail import CustomArg, Mail  # type: ignore[import-untyped]

from domain.notifications.values import Channel
from infrastructure.providers.provider import (
    OutboundMessage,
    PerThread,
    ProviderError,
    http_error,
    timed_out,
    unreachable,
)

SENDGRID_URL = "https://api.sendgrid.com"


def custom_args(message: OutboundMessage) -> dict[str, str]:
    return {
        "herald_notification_id": str(message.notification_id),
        "herald_attempt": str(message.attempt),
        "herald_tenant": message.tenant_id,
        "herald_dedupe_key": message.dedupe_key,
    }


class SendGridProvider:
    name = "sendgrid"
    channel = Channel.EMAIL

    def __init__(
        self, *, api_key: str, sender: str, timeout_ms: int, base_url: str | None = None
    ) -> None:
        """`base_url` None: SendGrid itself; else the provider simulator (the sandbox)."""
        self.sandbox = base_url is not None
        self._api_key = api_key
        self._sender = sender
        self._timeout_ms = timeout_ms
        self._base_url = base_url or SENDGRID_URL
        self._clients = PerThread(self._new_client)

    def _new_client(self) -> Any:
        client = SendGridAPIClient(self._api_key, host=self._base_url)
        # python_http_client hands this to urlopen for every request the client makes.
        client.client.timeout = self._timeout_ms / 1000
        return client

    def send(self, message: OutboundMessage) -> str:
        mail = Mail(
            from_email=self._sender,
            to_emails=message.recipient,
            subject=message.subject,
            plain_text_content=message.body,
        )
        mail.custom_arg = [CustomArg(key, value) for key, value in custom_args(message).items()]
        try:
            response = self._clients.get().send(mail)
        except HTTPError as exc:
            raise http_error(
                self.name, exc.status_code, _first_error(exc.body), exc.headers.get("Retry-After")
            ) from None
        except TimeoutError:
            raise timed_out(self._timeout_ms) from None
        except URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise timed_out(self._timeout_ms) from None
            raise unreachable(self.name, exc) from None
        except OSError as exc:  # e.g. the connection reset while reading the answer
            raise unreachable(self.name, exc) from None
        message_id = response.headers.get("X-Message-Id")
        if not message_id:
            raise ProviderError("sendgrid answered without an X-Message-Id", permanent=False)
        return str(message_id)

    def close(self) -> None:
        self._clients.drain()  # urllib opens a connection per request: nothing stays open


def _first_error(body: bytes) -> str | None:
    """The first message of SendGrid's {"errors": [{"message": ...}]} error body."""
    try:
        errors = json.loads(body)["errors"]
        return str(errors[0]["message"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
