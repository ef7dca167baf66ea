"""The value types and helpers every settings area shares: secrets, errors, and field metadata."""

from __future__ import annotations

import functools
import ipaddress
import typing
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

PREFIX = "HERALD_"


class Secret:
    """A value that must never reach a log line or an error message."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redacted(self) -> str:
        """The value with any URL password masked; safe to print."""
        return redact_url(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class SettingsError(Exception):
    """A setting has a bad value; `str()` is the one line shown to the operator."""

    def __init__(
        self, variable: str, problem: str, example: str | None = None, *, hint: str = ""
    ) -> None:
        self.variable = variable
        hint = hint or f"example: {variable}={example}"
        super().__init__(f"{variable} {problem} ({hint})")


def setting(description: str, example: str, **constraints: Any) -> msgspec.Meta:
    """A field's documentation (for .env.example and errors) and its constraints."""
    return msgspec.Meta(description=description, examples=[example], **constraints)


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def parse_per_key(raw: str, keys: list[str]) -> dict[str, int]:
    """Parse "a=1,b=2" into {"a": 1, "b": 2}; with `keys`, every one must be given, no other."""
    out: dict[str, int] = {}
    for part in raw.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"{part.strip()!r} is not name=number")
        if keys and name.strip() not in keys:
            raise ValueError(f"{name.strip()!r} is not one of {', '.join(keys)}")
        if int(value) < 1:
            raise ValueError(f"{name.strip()} must be at least 1")
        out[name.strip()] = int(value)
    missing = [k for k in keys if k not in out]
    if missing:
        raise ValueError(f"{', '.join(missing)} missing")
    return out


def field_meta(struct: type, field: str) -> msgspec.Meta:
    """The `setting(...)` metadata of one field of a settings class."""
    hint = _hints(struct)[field]
    return next(a for a in typing.get_args(hint) if isinstance(a, msgspec.Meta))


@functools.cache
def _hints(struct: type) -> dict[str, Any]:
    """A class's resolved annotations: resolving them all takes milliseconds, every time."""
    return typing.get_type_hints(struct, include_extras=True)


def example_of(struct: type, field: str) -> str:
    examples = field_meta(struct, field).examples
    return str(examples[0]) if examples else ""


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[IpNetwork]:
    """'10.0.0.1, 172.16.0.0/12' -> networks; raises ValueError naming a bad entry."""
    networks: list[IpNetwork] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network") from None
    return networks
