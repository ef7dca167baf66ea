"""The value objects a notification is made of, and the checks that refuse bad input.

Every check raises InvalidValueError naming the request field at fault, so an API can point
a client at exactly what to fix.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta

import msgspec

from domain.errors import InvalidValueError
from domain.identity.roles import normalise_email

MAX_SUBJECT_CHARS = 998  # RFC 5322's hard line limit, the longest subject mail can carry
MAX_BODY_BYTES = 65_536
MAX_METADATA_BYTES = 4_096
MAX_METADATA_KEYS = 32
MAX_TEMPLATE_VARIABLES_BYTES = 16_384
MAX_FALLBACK_CHANNELS = 2
MAX_IDEMPOTENCY_KEY_CHARS = 200
# Clocks disagree a little; a send_at this close to now means "now", not "in the past".
SEND_AT_TOLERANCE = timedelta(seconds=60)
MAX_SCHEDULE_AHEAD = timedelta(days=365)

E164_PATTERN = r"\+[1-9]\d{1,14}"
DEVICE_TOKEN_PATTERN = r"[A-Za-z0-9_:.\-]{1,4096}"  # noqa: S105 - a shape, not a secret
_E164 = re.compile(E164_PATTERN)
_DEVICE_TOKEN = re.compile(DEVICE_TOKEN_PATTERN)
_TEMPLATE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
# Visible ASCII, as the Idempotency-Key header allows; a space would not survive HTTP trimming.
_IDEMPOTENCY_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}")


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class Priority(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Content(msgspec.Struct, frozen=True, kw_only=True):
    """Either a literal body or a template to render with variables; subject for email."""

    subject: str | None = None
    body: str | None = None
    template_id: str | None = None
    variables: dict[str, str] = msgspec.field(default_factory=dict)


def check_recipient(channel: Channel, raw: str) -> str:
    match channel:
        case Channel.EMAIL:
            try:
                return normalise_email(raw)
            except InvalidValueError:
                raise InvalidValueError("recipient", "is not a valid email address") from None
        case Channel.SMS:
            # fullmatch: `$` would let a trailing newline through.
            if not _E164.fullmatch(raw):
                raise InvalidValueError(
                    "recipient", "is not an E.164 phone number like +14155550100"
                )
            return raw
        case Channel.PUSH:
            if not _DEVICE_TOKEN.fullmatch(raw):
                raise InvalidValueError("recipient", "is not a device token")
            return raw


def check_content(channel: Channel, content: Content) -> Content:
    if content.body is None and content.template_id is None:
        raise InvalidValueError("body", "or template_id is required")
    if content.body is not None and content.template_id is not None:
        raise InvalidValueError("template_id", "cannot be given together with body")
    if content.subject is not None:
        if len(content.subject) > MAX_SUBJECT_CHARS:
            raise InvalidValueError("subject", f"must be at most {MAX_SUBJECT_CHARS} characters")
        # A line break in a subject would let a sender write extra mail headers.
        if "\r" in content.subject or "\n" in content.subject:
            raise InvalidValueError("subject", "must not contain line breaks")
    if content.body is not None:
        if not content.body:
            raise InvalidValueError("body", "must not be empty")
        if len(content.body.encode("utf-8")) > MAX_BODY_BYTES:
            raise InvalidValueError("body", f"must be at most {MAX_BODY_BYTES} bytes in UTF-8")
        # A template may carry its own subject; a literal email body has nowhere else to get one.
        if channel is Channel.EMAIL and not content.subject:
            raise InvalidValueError("subject", "is required for an email with a body")
    if content.template_id is not None and not _TEMPLATE_ID.fullmatch(content.template_id):
        raise InvalidValueError("template_id", "must be 1-100 of A-Z, a-z, 0-9, '_', '.', '-'")
    if len(msgspec.json.encode(content.variables)) > MAX_TEMPLATE_VARIABLES_BYTES:
        raise InvalidValueError(
            "variables", f"must be at most {MAX_TEMPLATE_VARIABLES_BYTES} bytes as JSON"
        )
    return content


def check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidValueError("metadata", f"must have at most {MAX_METADATA_KEYS} keys")
    if len(msgspec.json.encode(metadata)) > MAX_METADATA_BYTES:
        raise InvalidValueError("metadata", f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return metadata


def check_send_at(send_at: datetime | None, now: datetime) -> datetime | None:
    if send_at is None:
        return None
    if send_at.tzinfo is None or send_at.utcoffset() is None:
        raise InvalidValueError("send_at", "must include a timezone offset")
    if send_at < now - SEND_AT_TOLERANCE:
        raise InvalidValueError("send_at", "is in the past")
    if send_at > now + MAX_SCHEDULE_AHEAD:
        raise InvalidValueError("send_at", f"must be at most {MAX_SCHEDULE_AHEAD.days} days ahead")
    return send_at


def check_fallback(channel: Channel, fallback: tuple[Channel, ...]) -> tuple[Channel, ...]:
    if channel in fallback:
        raise InvalidValueError("fallback", "must not include the primary channel")
    if len(set(fallback)) != len(fallback):
        raise InvalidValueError("fallback", "must not name a channel twice")
    if len(fallback) > MAX_FALLBACK_CHANNELS:
        raise InvalidValueError("fallback", f"must name at most {MAX_FALLBACK_CHANNELS} channels")
    return fallback


def check_fallback_recipients(
    fallback: tuple[Channel, ...], recipients: dict[Channel, str]
) -> dict[Channel, str]:
    """Each fallback channel needs its own address: a phone number is no use to email."""
    for channel in recipients:
        if channel not in fallback:
            raise InvalidValueError(
                f"fallback_recipients.{channel}", "names a channel that is not in fallback"
            )
    checked = {}
    for channel in fallback:
        raw = recipients.get(channel)
        if raw is None:
            raise InvalidValueError(f"fallback_recipients.{channel}", "is required")
        try:
            checked[channel] = check_recipient(channel, raw)
        except InvalidValueError as exc:
            raise InvalidValueError(f"fallback_recipients.{channel}", exc.reason) from None
    return checked


def check_idempotency_key(key: str | None) -> str | None:
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidValueError(
            "idempotency_key",
            f"must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters",
        )
    return key
