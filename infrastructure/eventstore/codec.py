"""Turns domain events into stored bytes and back, by msgspec, with versioned names.

A stored event's topic is `Name@version` (for example `UserRegistered@1`). Decoding an
older version runs the event class's upcasters over the plain data first, so the current
class always gets the current shape. Renamed classes keep loading through aliases.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from domain.events import DomainEvent


class UnknownEventError(LookupError):
    """A stored topic names no registered event class."""


class EventCodec:
    def __init__(
        self,
        event_types: Iterable[type[DomainEvent]],
        aliases: dict[str, type[DomainEvent]] | None = None,
    ) -> None:
        self._types: dict[str, type[DomainEvent]] = {t.__name__: t for t in event_types}
        self._types.update(aliases or {})
        self._encoder = msgspec.msgpack.Encoder()
        self._decoders = {t: msgspec.msgpack.Decoder(t) for t in set(self._types.values())}
        self._raw = msgspec.msgpack.Decoder(dict[str, Any])

    @staticmethod
    def topic(event: DomainEvent) -> str:
        return f"{type(event).__name__}@{event.version}"

    def encode(self, event: DomainEvent) -> tuple[str, bytes]:
        return self.topic(event), self._encoder.encode(event)

    def decode(self, topic: str, state: bytes) -> DomainEvent:
        name, _, version_text = topic.partition("@")
        event_type = self._types.get(name)
        if event_type is None:
            raise UnknownEventError(f"no event class is registered for {topic!r}")
        version = int(version_text or 1)
        if version == event_type.version:
            return self._decoders[event_type].decode(state)
        data = self._raw.decode(state)
        for step in range(version, event_type.version):
            data = event_type.upcasters[step](data)
        return msgspec.convert(data, event_type)
