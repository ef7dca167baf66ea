"""Every event type Herald stores, and the names older versions were stored under."""

from __future__ import annotations

from domain.events import DomainEvent
from domain.exports import EXPORT_EVENTS
from domain.identity.api_key import API_KEY_EVENTS
from domain.identity.session import SESSION_EVENTS
from domain.identity.user import USER_EVENTS
from domain.notifications.events import NOTIFICATION_EVENTS
from domain.operations import OPERATION_EVENTS
from domain.retention import RETENTION_EVENTS
from infrastructure.eventstore.codec import EventCodec

EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    *USER_EVENTS,
    *API_KEY_EVENTS,
    *SESSION_EVENTS,
    *OPERATION_EVENTS,
    *EXPORT_EVENTS,
    *RETENTION_EVENTS,
    *NOTIFICATION_EVENTS,
)
# The relay publishes these to Kafka; identity events (password hashes among them) stay home.
NOTIFICATION_EVENT_NAMES: tuple[str, ...] = tuple(t.__name__ for t in NOTIFICATION_EVENTS)
# A renamed event class keeps its old stored name here: {"OldName": NewClass}.
ALIASES: dict[str, type[DomainEvent]] = {}


def codec() -> EventCodec:
    return EventCodec(EVENT_TYPES, ALIASES)
