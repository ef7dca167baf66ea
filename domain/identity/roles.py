"""The roles a principal can hold, and the value objects identity is built from."""

from __future__ import annotations

import enum
import re

from domain.errors import InvalidValueError

MIN_PASSWORD_CHARS = 12
# bcrypt only reads the first 72 bytes; longer passwords are refused rather than truncated,
# so two different passwords can never share a hash.
MAX_PASSWORD_BYTES = 72
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})+"
# Once surrounding whitespace is cut; never a control character, which no address has and
# PostgreSQL cannot compare (NUL). \x85 and \ufeff are named because Python's \s and the
# OpenAPI document's (ECMA-262) differ on them alone once control characters are out.
EMAIL_PATTERN = rf"[^@\s\x00-\x1f\x7f\x85\ufeff]{{1,64}}@{EMAIL_DOMAIN}"
# The whitespace an address may come wrapped in, in a pattern that matches a raw value.
AROUND = r"[\t\n\v\f\r ]*"
_EMAIL = re.compile(rf"^{EMAIL_PATTERN}$")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Role(enum.StrEnum):
    ADMIN = "admin"  # manages users, keys and everything below
    OPERATOR = "operator"  # runs the system: retries, dead letters, metrics
    AUDITOR = "auditor"  # reads event history and exports
    SENDER = "sender"  # a service client that issues notification commands
    USER = "user"  # a recipient who reads their own notifications


def normalise_email(raw: str) -> str:
    email = raw.strip()
    if len(email) > 254 or not _EMAIL.match(email):  # noqa: PLR2004 - RFC 5321 path limit
        raise InvalidValueError("email", "is not a valid email address")
    # Compared case-insensitively, as nearly every mail provider treats addresses.
    return email.lower()


def check_tenant(raw: str) -> str:
    if not _TENANT.match(raw):
        raise InvalidValueError(
            "tenant", "must be 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )
    return raw


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidValueError("password", f"must be at least {MIN_PASSWORD_CHARS} characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise InvalidValueError("password", f"must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8")
    return password
