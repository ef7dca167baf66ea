"""The base of every domain event: a frozen msgspec Struct with a schema version.

An event's stored name is its class name; its `version` says which shape it was written
in, and `upcasters` turn an older shape (as a plain dict) into the next one, so events
written years ago still load.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import msgspec

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True):
    version: ClassVar[int] = 1
    # upcasters[n] turns the shape of version n into the shape of version n + 1.
    upcasters: ClassVar[dict[int, Upcaster]] = {}

    at: datetime
