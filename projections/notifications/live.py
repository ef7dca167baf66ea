"""The Redis read models: status by id, recent per recipient, unread counts, dashboard counters.

One Lua call per event applies everything an event changes in Redis, after the same version
check the SQL side makes, and records the projection's offset in the event's Kafka partition
in the same call: a redelivered or repeated event changes nothing twice. The script builds the
per-tenant key names from the status hash it reads, in the layout `RedisKeys` documents; every
key a notification touches is on one Redis server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis

from infrastructure.redis_keys import RECENT_KEPT, RedisKeys
from projections.notifications.view import Applied

_APPLY = """
local prefix, id, version = ARGV[1], ARGV[2], tonumber(ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], ARGV[4], ARGV[5]) end
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= version - 1 then return 0 end
local old = redis.call('HMGET', KEYS[1], 'status', 'tenant_id', 'recipient')
local status = ARGV[7]
if #ARGV > 9 then redis.call('HSET', KEYS[1], unpack(ARGV, 10)) end
redis.call('HSET', KEYS[1], 'status', status, 'version', ARGV[3])
local tenant = old[2] or redis.call('HGET', KEYS[1], 'tenant_id')
local recipient = old[3] or redis.call('HGET', KEYS[1], 'recipient')
local dashboard = prefix .. 'dashboard:' .. tenant
local recent = prefix .. 'recent:' .. tenant .. ':' .. recipient
redis.call('HINCRBY', dashboard, 'events:' .. ARGV[6], 1)
if status ~= old[1] then
  if old[1] then redis.call('HINCRBY', dashboard, 'status:' .. old[1], -1) end
  redis.call('HINCRBY', dashboard, 'status:' .. status, 1)
  local was = old[1] == 'sent' or old[1] == 'delivered'
  local now = status == 'sent' or status == 'delivered'
  if was ~= now then
    local unread = prefix .. 'unread:' .. tenant
    if redis.call('HINCRBY', unread, recipient, now and 1 or -1) <= 0 then
      redis.call('HDEL', unread, recipient)
    end
  end
end
if ARGV[8] ~= '' then
  redis.call('ZADD', recent, ARGV[8], id)
  redis.call('ZREMRANGEBYRANK', recent, 0, -tonumber(ARGV[9]) - 1)
end
if status == 'erased' then redis.call('ZREM', recent, id) end
return 1
"""


def text(value: Any) -> str:
    """A field value as the status hash stores it: '' for none, ISO 8601 for times."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class LiveModels:
    def __init__(self, client: redis.Redis, keys: RedisKeys, projection: str) -> None:
        self._client = client
        self._keys = keys
        self._script = client.register_script(_APPLY)
        self._offsets = keys.offsets(projection)

    def apply(self, items: list[tuple[Applied, str, int | None, int | None]]) -> int:
        """Apply (change, event name, partition, next offset) items in one round trip."""
        if not items:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for item, name, partition, next_offset in items:
            self._script(
                keys=[self._keys.status(item.stream_id), self._offsets],
                args=self._args(item, name, partition, next_offset),
                client=pipe,
            )
        return sum(int(result) for result in pipe.execute())

    def offsets(self) -> dict[int, int]:
        stored = self._client.hgetall(self._offsets)
        return {int(partition): int(offset) for partition, offset in stored.items()}

    def _args(
        self, item: Applied, name: str, partition: int | None, next_offset: int | None
    ) -> list[Any]:
        change = item.change
        recent = ""
        fields: list[str] = ["updated_at", text(item.at), "position", str(item.position)]
        if change.created:
            recent = str(int(item.at.timestamp() * 1000))
            fields += ["attempts", "0"]
        for column, value in change.fields.items():
            fields += [column, text(value)]
        return [
            self._keys.prefix,
            str(item.stream_id),
            item.version,
            "" if partition is None else partition,
            "" if next_offset is None else next_offset,
            name,
            change.status,
            recent,
            RECENT_KEPT,
            *fields,
        ]
