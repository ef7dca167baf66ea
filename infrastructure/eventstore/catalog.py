"""Every event type Herald stores, and the names older versions were stored under."""

from __future__ import annotations

from domain.events import DomainEvent
from domain.exports import EXPORT_EVENTS
from domain.identity.api_key import API_KEY_EVENTS
from domain.identity.session import SESSION_EVENTS
from domain.identity.user import USER_EVENTS
from domain.notifications.events import NOTIFICATION_EVENTS
from domain.operations import OPERATION_EVENTS
from domain.privacy import PRIVACY_EVENTS
from domain.retention import RETENTION_EVENTS
from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.sealer import Sealer
from infrastructure.privacy.keyring import Keyring
from infrastructure.privacy.master import master_keys
from infrastructure.settings import Settings, require_servers
from infrastructure.settings.access import require_master_key

EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    *USER_EVENTS,
    *API_KEY_EVENTS,
    *SESSION_EVENTS,
    *OPERATION_EVENTS,
    *EXPORT_EVENTS,
    *RETENTION_EVENTS,
    *PRIVACY_EVENTS,
    *NOTIFICATION_EVENTS,
)
# The relay publishes these to Kafka; identity events (password hashes among them) stay home.
NOTIFICATION_EVENT_NAMES: tuple[str, ...] = tuple(t.__name__ for t in NOTIFICATION_EVENTS)
# A renamed event class keeps its old stored name here: {"OldName": NewClass}.
ALIASES: dict[str, type[DomainEvent]] = {}


def codec(sealer: Sealer | None = None) -> EventCodec:
    """The codec of every event type; with `sealer`, personal fields are sealed."""
    return EventCodec(EVENT_TYPES, ALIASES, sealer)


def codec_for(settings: Settings) -> EventCodec:
    """The codec the roles use: personal fields sealed under data keys that
    HERALD_MASTER_KEY wraps (SettingsError naming it when it is not set)."""
    require_master_key(settings)
    assert settings.master_key is not None  # noqa: S101 - required just above
    database_url, _, _ = require_servers(settings)
    previous = settings.master_key_previous
    keys = master_keys(settings.master_key.reveal(), previous.reveal() if previous else None)
    return codec(Sealer(Keyring(database_url, keys, ttl_s=settings.key_cache_s)))
