"""Receipts for push: the device, not FCM, says that a push arrived.

FCM posts no delivery callback. Each push therefore carries, in its data payload, a receipt
token: an HMAC over its notification id and attempt. The app posts the token back to
`POST /webhooks/push-receipts` when the push arrives (and again when it is opened), and the
token is the request's credential, as a provider's signature is for the other webhooks.

The key is derived from HERALD_JWT_SECRET, so nothing new has to be configured and a
receipt key cannot be turned back into a token-signing key. Receipts signed with a secret
in HERALD_JWT_PREVIOUS_SECRETS keep verifying through a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from uuid import UUID

from infrastructure.settings import Settings

_LABEL = b"herald push receipts v1"


def receipt_keys(settings: Settings) -> list[bytes]:
    """The signing key first, then keys that still verify; empty without a JWT secret."""
    if settings.jwt_secret is None:
        return []
    previous = settings.jwt_previous_secrets.reveal() if settings.jwt_previous_secrets else ""
    secrets = [settings.jwt_secret.reveal(), *(s.strip() for s in previous.split(","))]
    return [hmac.new(s.encode(), _LABEL, hashlib.sha256).digest() for s in secrets if s]


def sign(key: bytes, notification_id: UUID, attempt: int) -> str:
    digest = hmac.new(key, f"{notification_id}:{attempt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(keys: list[bytes], notification_id: UUID, attempt: int, receipt: str) -> bool:
    given = receipt.encode()  # compare_digest refuses a str that is not ASCII
    return any(
        hmac.compare_digest(sign(key, notification_id, attempt).encode(), given) for key in keys
    )
