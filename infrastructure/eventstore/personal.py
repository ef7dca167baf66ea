"""Which fields of which events are personal data, and whose.

Each rule rewrites an event's personal fields through a function of (subject, value): the
sealer passes one that seals under the subject's key, the opener one that opens whatever
key a field names, and the preparer one that only notes the subjects. Fields that are not
listed here are not personal: ids, statuses, times, channels, provider names, and error
texts, from which the domain takes the addresses out before they are recorded.

- A notification's recipient, its content (subject, body, template variables) and its
  metadata values belong to its recipient; each fallback address to that address.
- A user's email belongs to the user account; a failed login's email to the account it
  named, or, when there is none, to that address as a recipient.
- The client address and user agent in event metadata belong to the user who acted, or for
  an anonymous request to the subject of its first event that has one. An API key acts for
  a service, not a person: its requests' metadata stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import msgspec

from domain.events import DomainEvent
from domain.identity.session import LoginFailed, LoginSucceeded
from domain.identity.user import UserRegistered
from domain.notifications.events import (
    ArchivedNotification,
    ChannelFallenBack,
    NotificationRequested,
    NotificationRestored,
)
from domain.notifications.values import Content
from infrastructure.eventstore.meta import EventMeta
from infrastructure.privacy.keyring import Subject

Field = Callable[[Subject, str], str]  # (whose, value) -> value rewritten
Rule = Callable[[UUID, DomainEvent, Field], DomainEvent]
_replace = msgspec.structs.replace


def _recipient(tenant: str, address: str) -> Subject:
    return Subject(tenant, "recipient", address)


def _user(tenant: str, user_id: UUID | str) -> Subject:
    return Subject(tenant, "user", str(user_id))


def _content(content: Content, whose: Subject, field: Field) -> Content:
    return _replace(
        content,
        subject=None if content.subject is None else field(whose, content.subject),
        body=None if content.body is None else field(whose, content.body),
        variables={name: field(whose, value) for name, value in content.variables.items()},
    )


def _requested(_stream: UUID, event: DomainEvent, field: Field) -> DomainEvent:
    assert isinstance(event, NotificationRequested)  # noqa: S101 - the rule's own type
    whose = _recipient(event.tenant_id, event.recipient)
    return _replace(
        event,
        recipient=field(whose, event.recipient),
        content=_content(event.content, whose, field),
        metadata={name: field(whose, value) for name, value in event.metadata.items()},
        fallback_recipients={
            channel: field(_recipient(event.tenant_id, address), address)
            for channel, address in event.fallback_recipients.items()
        },
    )


def _fallen_back(_stream: UUID, event: DomainEvent, field: Field) -> DomainEvent:
    assert isinstance(event, ChannelFallenBack)  # noqa: S101 - the rule's own type
    if event.to_recipient is None:
        return event
    whose = _recipient(event.tenant_id, event.to_recipient)
    return _replace(event, to_recipient=field(whose, event.to_recipient))


def _restored(_stream: UUID, event: DomainEvent, field: Field) -> DomainEvent:
    assert isinstance(event, NotificationRestored)  # noqa: S101 - the rule's own type
    held: ArchivedNotification = event.notification
    whose = _recipient(event.tenant_id, held.recipient)
    sealed = _replace(
        held,
        recipient=field(whose, held.recipient),
        last_error=None if held.last_error is None else field(whose, held.last_error),
    )
    return _replace(event, notification=sealed)


def _registered(stream: UUID, event: DomainEvent, field: Field) -> DomainEvent:
    assert isinstance(event, UserRegistered)  # noqa: S101 - the rule's own type
    return _replace(event, email=field(_user(event.tenant_id, stream), event.email))


def _logged_in(_stream: UUID, event: DomainEvent, field: Field) -> DomainEvent:
    assert isinstance(event, LoginSucceeded)  # noqa: S101 - the rule's own type
    return _replace(event, email=field(_user(event.tenant_id, event.user_id), event.email))


def _login_failed(_stream: UUID, event: DomainEvent, field: Field) -> DomainEvent:
    assert isinstance(event, LoginFailed)  # noqa: S101 - the rule's own type
    whose = (
        _user(event.tenant_id, event.user_id)
        if event.user_id is not None
        else _recipient(event.tenant_id, event.email)
    )
    return _replace(event, email=field(whose, event.email))


RULES: dict[type[DomainEvent], Rule] = {
    NotificationRequested: _requested,
    ChannelFallenBack: _fallen_back,
    NotificationRestored: _restored,
    UserRegistered: _registered,
    LoginSucceeded: _logged_in,
    LoginFailed: _login_failed,
}


def owner_of(stream: UUID, event: DomainEvent) -> Subject | None:
    """The subject an event is first about, when it has one."""
    rule = RULES.get(type(event))
    if rule is None:
        return None
    found: list[Subject] = []

    def note(whose: Subject, value: str) -> str:
        found.append(whose)
        return value

    rule(stream, event, note)
    return found[0] if found else None


def meta_owner(about: EventMeta, first: Subject | None) -> Subject | None:
    """Whose the client address and user agent of `about` are: see the module's docstring."""
    if about.ip is None and about.user_agent is None:
        return None
    if about.actor_kind == "user" and about.actor and about.tenant:
        return _user(about.tenant, about.actor)
    if about.actor is None:
        return first
    return None


def meta_fields(about: EventMeta, whose: Subject, field: Field) -> EventMeta:
    return _replace(
        about,
        ip=None if about.ip is None else field(whose, about.ip),
        user_agent=None if about.user_agent is None else field(whose, about.user_agent),
    )
