"""Sealing events' personal fields as they are stored, and opening them as they are read.

The codec calls this on the way in and out, so what is stored, and every copy made from the
stored bytes (Kafka messages, backups), holds ciphertext; what the code above the codec sees
is plaintext, or `[erased]` where a subject's key was destroyed. Keys are looked up a batch
at a time: `prepare` before sealing many events, `open_many` to read many.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Sequence
from uuid import UUID

from domain.events import DomainEvent
from infrastructure.eventstore.meta import EventMeta
from infrastructure.eventstore.personal import RULES, meta_fields, meta_owner, owner_of
from infrastructure.privacy.cipher import PREFIX, DataKey, open_raw, raw_of, seal
from infrastructure.privacy.keyring import Keyring, Subject

# What every sealed field starts with, as stored in msgpack: a quick test of whether a
# stored event needs opening at all.
SEALED_MARK = b"\x1bhx1:"
# The first 24 characters after the mark hold the key's id (16 bytes) and then some.
_KEY_IDS = re.compile(re.escape(SEALED_MARK) + rb"([A-Za-z0-9_-]{24})")


class Sealer:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    # Sealing

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

    def ready(self, subjects: Iterable[Subject]) -> bool:
        """Whether every subject's key is in this process's cache: sealing needs no I/O."""
        return all(self.keyring.cached_for(subject) is not None for subject in subjects)

    def prepare(self, subjects: Iterable[Subject]) -> None:
        """Fetch (or make) the keys of `subjects`, in one round trip."""
        self.keyring.keys_for(subjects)

    def _key(self, subject: Subject) -> DataKey:
        return self.keyring.cached_for(subject) or self.keyring.keys_for([subject])[subject]

    def seal(self, stream: UUID, event: DomainEvent) -> DomainEvent:
        rule = RULES.get(type(event))
        if rule is None:
            return event
        keys: dict[Subject, DataKey] = {}

        def sealed(whose: Subject, value: str) -> str:
            key = keys.get(whose)
            if key is None:
                key = keys[whose] = self._key(whose)
            return seal(key, value)

        return rule(stream, event, sealed)

    def seal_meta(
        self, about: EventMeta | None, items: Sequence[tuple[UUID, DomainEvent]]
    ) -> EventMeta | None:
        """`about` with its client address and user agent sealed under their owner's key."""
        if about is None:
            return None
        first = next((o for s, e in items if (o := owner_of(s, e)) is not None), None)
        owner = meta_owner(about, first)
        if owner is None:
            return about
        key = self._key(owner)
        return meta_fields(about, owner, lambda _whose, value: seal(key, value))

    # Opening

    def keys_missing(self, states: Iterable[bytes]) -> bool:
        """Whether opening events stored as `states` needs keys this process has not cached,
        read straight from the bytes (no decoding): then open them off the event loop."""
        ids = {
            base64.urlsafe_b64decode(match)[:16]
            for state in states
            if SEALED_MARK in state
            for match in _KEY_IDS.findall(state)
        }
        return bool(ids) and not self.keyring.all_cached(ids)

    def open_many(self, events: Sequence[DomainEvent]) -> list[DomainEvent]:
        """`events` with their personal fields opened, keys fetched in one round trip."""
        tokens: dict[str, bytes] = {}  # each sealed field, decoded once

        def note(_whose: Subject, value: str) -> str:
            if value.startswith(PREFIX) and value not in tokens:
                tokens[value] = raw_of(value)
            return value

        ruled = [(event, RULES.get(type(event))) for event in events]
        for event, rule in ruled:
            if rule is not None:
                rule(_NO_STREAM, event, note)
        unseal = self._opener(tokens)
        return [event if rule is None else rule(_NO_STREAM, event, unseal) for event, rule in ruled]

    def open_meta(self, about: EventMeta) -> EventMeta:
        tokens = {
            value: raw_of(value)
            for value in (about.ip, about.user_agent)
            if value is not None and value.startswith(PREFIX)
        }
        if not tokens:
            return about
        return meta_fields(about, _NOBODY, self._opener(tokens))

    def _opener(self, tokens: dict[str, bytes]) -> Callable[[Subject, str], str]:
        keys = self.keyring.keys_by_id({raw[:16] for raw in tokens.values()}) if tokens else {}

        def unseal(_whose: Subject, value: str) -> str:
            raw = tokens.get(value)
            return value if raw is None else open_raw(keys.get(raw[:16]), raw)

        return unseal


_NO_STREAM = UUID(int=0)  # opening needs no stream: each field names its key
_NOBODY = Subject("", "", "")
