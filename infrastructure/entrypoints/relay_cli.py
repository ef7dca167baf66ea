"""`herald relay status|reset`: the outbox relay's position, and publishing again from one."""

from __future__ import annotations

from infrastructure.eventstore.tracking import lag
from infrastructure.relay import TRACKING_NAME, reset_position
from infrastructure.settings import Settings, require_servers


def status(settings: Settings, max_lag: int | None) -> bool:
    """Print the relay's position, the head and the lag; False when more than `max_lag` wait."""
    database_url, _, _ = require_servers(settings)
    position, head = lag(database_url, TRACKING_NAME)
    print(f"relay position {position}, head of the log {head}, lag {head - position}")
    return max_lag is None or head - position <= max_lag


def reset(settings: Settings, position: int) -> None:
    """Make the relay publish again from `position` (exclusive); a running relay follows."""
    database_url, _, _ = require_servers(settings)
    reset_position(database_url, position)
    print(f"the relay will publish again from position {position}")
