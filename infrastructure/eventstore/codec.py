"""Turns domain events into stored bytes and back, by msgspec, with versioned names.

A stored event's topic is `Name@version` (for example `UserRegistered@1`). Decoding an
older version runs the event class's upcasters over the plain data first, so the current
class always gets the current shape. Renamed classes keep loading through aliases.

With a `Sealer`, personal fields are sealed under their subject's key as events (and their
metadata) are encoded, and opened as they are decoded: see `sealer.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any
from uuid import UUID

import msgspec

from domain.events import DomainEvent
from infrastructure.eventstore import meta
from infrastructure.eventstore.meta import EventMeta
from infrastructure.eventstore.sealer import SEALED_MARK, Sealer, clear_part
from infrastructure.privacy.keyring import KeysNotCachedError, Subject
from infrastructure.privacy.made_keys import MadeKeys


class UnknownEventError(LookupError):
    """A stored topic names no registered event class."""


class EventCodec:
    def __init__(
        self,
        event_types: Iterable[type[DomainEvent]],
        aliases: dict[str, type[DomainEvent]] | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.sealer = sealer
        self._types: dict[str, type[DomainEvent]] = {t.__name__: t for t in event_types}
        self._types.update(aliases or {})
        self._encoder = msgspec.msgpack.Encoder()
        self._decoders = {t: msgspec.msgpack.Decoder(t) for t in set(self._types.values())}
        self._raw = msgspec.msgpack.Decoder(dict[str, Any])

    @staticmethod
    def topic(event: DomainEvent) -> str:
        return f"{type(event).__name__}@{event.version}"

    def encode(
        self, event: DomainEvent, stream_id: UUID | None = None, unstored: set[bytes] | None = None
    ) -> tuple[str, bytes]:
        """The topic and bytes of `event`, its personal fields sealed (given its stream and
        `unstored`, which gets the ids of keys made for it: store them with it, see
        `key_rows`)."""
        if self.sealer is not None and stream_id is not None:
            if unstored is None:
                raise TypeError("sealing needs a set for the ids of the keys it makes")
            return self.topic(event), self.sealer.seal(
                stream_id, event, self._encoder.encode, unstored
            )
        return self.topic(event), self._encoder.encode(event)

    def recipient_hash(self, tenant: str, recipient: str) -> bytes:
        """What lookups by recipient go by: the keyed hash of the address under the tenant's
        hashing key. Without a sealer (unsealed benchmarks) the address's own bytes."""
        if self.sealer is None:
            return recipient.encode()
        return self.sealer.keyring.subject_hash(Subject(tenant, "recipient", recipient))

    def prepare_keys(
        self, items: Sequence[tuple[UUID, DomainEvent]], about: EventMeta | None = None
    ) -> None:
        """What sealing `items` and `about` needs (I/O): after KeysNotCachedError from
        `encode` or `encode_meta`."""
        if self.sealer is not None:
            self.sealer.prepare(self.sealer.subjects(items, about))

    @property
    def made_keys(self) -> MadeKeys | None:
        """The keys sealing made whose rows are still to be stored: a writer claims those its
        events were sealed under (the ids `encode` collected) and stores them with them."""
        return None if self.sealer is None else self.sealer.keyring.made

    def encode_all(
        self, pairs: Sequence[tuple[UUID, DomainEvent]], about: EventMeta | None
    ) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        """The stored metadata and each (topic, bytes) of `pairs`, for callers that write
        them through a connection of their own: the keys made for them are stored first,
        in a transaction of their own (I/O: sync callers only)."""
        unstored: set[bytes] = set()
        try:
            encoded = self._encode_all(pairs, about, unstored)
        except KeysNotCachedError:
            self.prepare_keys(pairs, about)
            encoded = self._encode_all(pairs, about, unstored)
        if unstored and self.sealer is not None:
            self.sealer.keyring.store_now(unstored)
        return encoded

    def _encode_all(
        self,
        pairs: Sequence[tuple[UUID, DomainEvent]],
        about: EventMeta | None,
        unstored: set[bytes],
    ) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        return self.encode_meta(about, pairs, unstored), [
            self.encode(e, s, unstored) for s, e in pairs
        ]

    def encode_meta(
        self,
        about: EventMeta | None,
        items: Sequence[tuple[UUID, DomainEvent]],
        unstored: set[bytes] | None = None,
    ) -> bytes | None:
        """The metadata to store with `items`, its client address and user agent sealed
        (given `unstored`, as `encode`)."""
        if self.sealer is not None:
            if unstored is None:
                raise TypeError("sealing needs a set for the ids of the keys it makes")
            about = self.sealer.seal_meta(about, items, unstored)
        return meta.encode(about)

    def decode_meta(self, raw: bytes | None) -> EventMeta | None:
        about = meta.decode(raw)
        if about is None or self.sealer is None or SEALED_MARK not in (raw or b""):
            return about
        return self.sealer.open_meta(about)

    def decode(self, topic: str, state: bytes) -> DomainEvent:
        return self.decode_many([(topic, state)])[0]

    def keys_missing(self, states: Sequence[bytes]) -> bool:
        """Whether decoding `states` would fetch keys (I/O): async callers then decode in a
        worker thread."""
        return self.sealer is not None and self.sealer.keys_missing(states)

    def decode_many(self, items: Sequence[tuple[str, bytes]]) -> list[DomainEvent]:
        """Decode many events, fetching the keys their sealed fields need in one round trip."""
        if self.sealer is None:
            return [self._decode(topic, clear_part(state)) for topic, state in items]
        return self.sealer.open_many(
            [(state, partial(self._decode, topic)) for topic, state in items]
        )

    def _decode(self, topic: str, state: bytes) -> DomainEvent:
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
