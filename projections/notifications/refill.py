"""Refilling the projector's Redis status hashes from `notification_view`, without ever
overwriting a newer one: shared by `rebuild` and the warming job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from psycopg import sql

from infrastructure.redis_keys import RedisKeys
from projections.notifications import view
from projections.notifications.live import text

# KEYS[1] the status hash; ARGV[1] the row's version, then field, value pairs. A hash the
# projector has already moved past that version is left alone.
_REFILL = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
HASHED = [name for name, _ in view.COLUMNS if name not in {"notification_id", "created_position"}]
# What to select from notification_view for `HashRefill.rows`: the id, then the hashed fields.
HASHED_COLUMNS = sql.SQL(", ").join(sql.Identifier(c) for c in ["notification_id", *HASHED])


class HashRefill:
    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys
        self._script = client.register_script(_REFILL)

    def rows(self, rows: Sequence[Sequence[Any]]) -> int:
        """Write the hash of each row (selected with HASHED_COLUMNS); returns how many were
        written, as opposed to left alone for being older than what Redis has."""
        pipe = self._client.pipeline(transaction=False)
        for row in rows:
            pairs = [
                v for name, value in zip(HASHED, row[1:], strict=True) for v in (name, text(value))
            ]
            version = row[1 + HASHED.index("version")]
            self._script(keys=[self._keys.status(row[0])], args=[version, *pairs], client=pipe)
        return sum(int(written) for written in pipe.execute())
