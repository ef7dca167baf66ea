"""Sealing events' personal fields as they are stored, and opening them as they are read.

The codec calls this on the way in and out, so what is stored, and every copy made from the
stored bytes (Kafka messages, backups), holds ciphertext; what the code above the codec sees
is plaintext, or `[erased]` where a subject's key was destroyed.

An event with personal fields is stored as a sealed envelope:

    MARK, the number of subjects,
    per subject: its key's id (16 bytes), a nonce (12), the length and the ciphertext of
        its values (a msgpack list of strings, AES-256-GCM under the subject's key),
    the number of personal fields, and per field the index of the subject it belongs to,
    the event itself in msgpack, each personal field left as "".

So one encryption per subject per event, whatever the number of fields, and the event's
other fields (tenant, ids, times, channel) stay readable to whatever reads the log without
keys, such as the relay copying them into Kafka headers. Metadata keeps its own, smaller
form: its client address and user agent sealed field by field (`cipher.seal`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence
from uuid import UUID

import msgspec
from cryptography.exceptions import InvalidTag

from domain.events import DomainEvent
from infrastructure.eventstore.meta import EventMeta
from infrastructure.eventstore.personal import RULES, meta_fields, meta_owner, owner_of
from infrastructure.privacy.cipher import ERASED, PREFIX, DataKey, SealedFieldError, open_raw
from infrastructure.privacy.cipher import raw_of as field_raw
from infrastructure.privacy.cipher import seal as seal_field
from infrastructure.privacy.keyring import Keyring, Subject

MARK = b"\x1bhx2"  # a sealed envelope starts so; msgpack of a struct never does
SEALED_MARK = b"\x1bhx1:"  # what sealed metadata fields hold
_NONCE = 12
_ID = 16
_CHUNK = struct.Struct(">16s12sI")  # key id, nonce, ciphertext length
_COUNT = struct.Struct(">H")
_values = msgspec.msgpack.Encoder()
_strings = msgspec.msgpack.Decoder(list[str])


class Sealer:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        # Nonces: a random prefix per process and a counter, never repeated under one key.
        self._nonce_prefix = os.urandom(4)
        self._counter = 0

    # Keys

    def subjects(
        self, items: Iterable[tuple[UUID, DomainEvent]], about: EventMeta | None
    ) -> set[Subject]:
        """Every subject whose key sealing `items` (and `about`) needs."""
        found: set[Subject] = set()

        def note(whose: Subject, value: str) -> str:
            found.add(whose)
            return value

        first = None
        for stream, event in items:
            rule = RULES.get(type(event))
            if rule is not None:
                rule(stream, event, note)
                first = first or owner_of(stream, event)
        if about is not None:
            owner = meta_owner(about, first)
            if owner is not None:
                found.add(owner)
        return found

    def prepare(self, subjects: Iterable[Subject]) -> None:
        """After KeysNotCachedError: what sealing for `subjects` needs, in one round trip."""
        self.keyring.refresh(subjects)

    def _nonce(self) -> bytes:
        self._counter += 1
        return self._nonce_prefix + self._counter.to_bytes(8, "big")

    # Sealing

    def seal(
        self,
        stream: UUID,
        event: DomainEvent,
        encode: Callable[[DomainEvent], bytes],
        unstored: set[bytes],
    ) -> bytes:
        """The stored bytes of `event`: an envelope when it has personal fields. The ids of
        keys made for it and not stored yet are added to `unstored`: store them with it.
        KeysNotCachedError when the keys need I/O: `prepare`, then again."""
        rule = RULES.get(type(event))
        if rule is None:
            return encode(event)
        owners: list[Subject] = []
        values: list[str] = []

        def take(whose: Subject, value: str) -> str:
            owners.append(whose)
            values.append(value)
            return ""

        clear = rule(stream, event, take)
        if not values:
            return encode(event)
        first = owners[0]
        if all(whose is first for whose in owners):  # the usual case: one subject
            chunks = {first: values}
            indexes = bytes(len(values))
        else:
            chunks = {}
            for whose, value in zip(owners, values, strict=True):
                chunks.setdefault(whose, []).append(value)
            order = {whose: index for index, whose in enumerate(chunks)}
            indexes = bytes(order[whose] for whose in owners)
        parts = [MARK, bytes((len(chunks),))]
        for whose, chunk in chunks.items():  # in order of first appearance, as indexes count
            key = self.keyring.key_to_seal(whose, unstored)
            nonce = self._nonce()
            body = key.aead.encrypt(nonce, _values.encode(chunk), key.raw_id)
            parts += (_CHUNK.pack(key.raw_id, nonce, len(body)), body)
        parts += (_COUNT.pack(len(indexes)), indexes, encode(clear))
        return b"".join(parts)

    def seal_meta(
        self,
        about: EventMeta | None,
        items: Sequence[tuple[UUID, DomainEvent]],
        unstored: set[bytes],
    ) -> EventMeta | None:
        """`about` with its client address and user agent sealed under their owner's key."""
        if about is None:
            return None
        first = next((o for s, e in items if (o := owner_of(s, e)) is not None), None)
        owner = meta_owner(about, first)
        if owner is None:
            return about
        key = self.keyring.key_to_seal(owner, unstored)
        return meta_fields(about, owner, lambda _whose, value: seal_field(key, value))

    # Opening

    def keys_missing(self, states: Iterable[bytes]) -> bool:
        """Whether opening events stored as `states` needs keys this process has not cached,
        read straight from the bytes: then open them off the event loop."""
        ids = {key_id for state in states if state.startswith(MARK) for key_id in _key_ids(state)}
        return bool(ids) and not self.keyring.all_cached(ids)

    def open_many(
        self,
        items: Sequence[tuple[bytes, Callable[[bytes], DomainEvent]]],
    ) -> list[DomainEvent]:
        """Events from their stored bytes, each with the decoder of its type; the keys of all
        the envelopes among them fetched in one round trip."""
        parsed = [_parse(state) if state.startswith(MARK) else None for state, _ in items]
        wanted = {chunk[0] for found in parsed if found for chunk in found.chunks}
        keys = self.keyring.keys_by_id(wanted) if wanted else {}
        events = []
        for (state, decode), found in zip(items, parsed, strict=True):
            if found is None:
                events.append(decode(state))
                continue
            clear = decode(found.clear)
            values = [
                self._open_chunk(keys.get(key_id), key_id, nonce, body)
                for key_id, nonce, body in found.chunks
            ]
            events.append(_refill(clear, found.owners, values))
        return events

    @staticmethod
    def _open_chunk(
        key: DataKey | None, key_id: bytes, nonce: bytes, body: bytes
    ) -> list[str] | None:
        if key is None:
            return None  # destroyed: its fields read as erased
        try:
            return _strings.decode(key.aead.decrypt(nonce, body, key_id))
        except InvalidTag:
            raise SealedFieldError(
                f"an envelope sealed under key {key.key_id} does not open"
            ) from None

    def open_meta(self, about: EventMeta) -> EventMeta:
        tokens = {
            value: field_raw(value)
            for value in (about.ip, about.user_agent)
            if value is not None and value.startswith(PREFIX)
        }
        if not tokens:
            return about
        keys = self.keyring.keys_by_id({raw[:_ID] for raw in tokens.values()})

        def unseal(_whose: Subject, value: str) -> str:
            raw = tokens.get(value)
            return value if raw is None else open_raw(keys.get(raw[:_ID]), raw)

        return meta_fields(about, _NOBODY, unseal)


class _Envelope:
    __slots__ = ("chunks", "clear", "owners")

    def __init__(
        self, chunks: list[tuple[bytes, bytes, bytes]], owners: bytes, clear: bytes
    ) -> None:
        self.chunks = chunks
        self.owners = owners
        self.clear = clear


def _parse(state: bytes) -> _Envelope:
    try:
        at = len(MARK)
        count = state[at]
        at += 1
        chunks = []
        for _ in range(count):
            key_id, nonce, length = _CHUNK.unpack_from(state, at)
            at += _CHUNK.size
            chunks.append((key_id, nonce, state[at : at + length]))
            at += length
        (fields,) = _COUNT.unpack_from(state, at)
        at += _COUNT.size
        owners = state[at : at + fields]
        return _Envelope(chunks, owners, state[at + fields :])
    except (IndexError, struct.error):
        raise SealedFieldError("a sealed event is cut short") from None


def _key_ids(state: bytes) -> list[bytes]:
    return [chunk[0] for chunk in _parse(state).chunks]


def clear_part(state: bytes) -> bytes:
    """The msgpack of a stored event without its personal fields: readable without keys."""
    return _parse(state).clear if state.startswith(MARK) else state


def _refill(clear: DomainEvent, owners: bytes, values: list[list[str] | None]) -> DomainEvent:
    rule = RULES[type(clear)]
    position = [0] * len(values)
    field_index = iter(owners)

    def put(_whose: Subject, _value: str) -> str:
        chunk = next(field_index)
        found = values[chunk]
        if found is None:
            return ERASED
        value = found[position[chunk]]
        position[chunk] += 1
        return value

    return rule(_NO_STREAM, clear, put)


_NO_STREAM = UUID(int=0)  # opening needs no stream: the envelope says whose each field is
_NOBODY = Subject("", "", "")
