"""Who recorded an event, and from where: the metadata stored beside every event.

A request binds its part when it arrives (client address, user agent, request id), the
guard adds the principal once it is authenticated, and the message bus adds the command
and a command id for the time its handler runs. The event store and the group-commit
writer store whatever is bound when an append is made, with each event of it. Binding
happens in a context variable, so concurrent requests never see each other's metadata and
a worker thread the bus hands a handler to inherits it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import msgspec
from uuid_utils.compat import uuid7

USER_AGENT_CHARS = 256


class EventMeta(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """Stored positionally (a msgpack array), since every event carries a copy: new fields
    go at the end, with defaults, so that metadata stored before them still loads."""

    actor: str | None = None  # the user or API key id
    actor_kind: str | None = None  # "user" or "api_key"
    roles: tuple[str, ...] = ()  # the principal's roles when it acted
    tenant: str | None = None  # the principal's tenant
    ip: str | None = None  # the client's address (see HERALD_TRUSTED_PROXIES)
    user_agent: str | None = None
    request_id: str | None = None
    command: str | None = None  # e.g. "GrantRole"
    command_id: str | None = None  # one per command: the events of a batch share it


_current: ContextVar[EventMeta | None] = ContextVar("herald_event_meta", default=None)
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(EventMeta).decode


def current() -> EventMeta | None:
    return _current.get()


def encoded() -> bytes | None:
    """What to store with the events appended now; None outside any request or command."""
    return encode(_current.get())


def encode(meta: EventMeta | None) -> bytes | None:
    return None if meta is None else _encode(meta)


def decode(raw: bytes | None) -> EventMeta | None:
    return None if raw is None else _decode(raw)


@contextmanager
def request(*, ip: str | None, user_agent: str | None, request_id: str) -> Iterator[None]:
    """Bind a request's metadata for as long as it is handled."""
    token = _current.set(
        EventMeta(
            ip=ip,
            user_agent=user_agent[:USER_AGENT_CHARS] if user_agent else None,
            request_id=request_id,
        )
    )
    try:
        yield
    finally:
        _current.reset(token)


def set_actor(actor: str, kind: str, roles: tuple[str, ...], tenant: str) -> None:
    """Name who acts, for the rest of the request: the guard, once it has authenticated the
    caller, or a use case that authenticates by other means (a login, a refresh token)."""
    base = _current.get() or EventMeta()
    _current.set(
        msgspec.structs.replace(base, actor=actor, actor_kind=kind, roles=roles, tenant=tenant)
    )


@contextmanager
def command(name: str) -> Iterator[None]:
    """Bind the command being handled, with a fresh id, for as long as its handler runs."""
    base = _current.get() or EventMeta()
    token = _current.set(msgspec.structs.replace(base, command=name, command_id=str(uuid7())))
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def bound(meta: EventMeta | None) -> Iterator[None]:
    """Bind metadata captured earlier: work that finishes later, or in another thread,
    records as part of the request that began it."""
    token = _current.set(meta)
    try:
        yield
    finally:
        _current.reset(token)
