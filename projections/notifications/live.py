"""The Redis read models: status by id, recent per recipient, unread counts, dashboard counters.

A Lua script applies a chunk of events (each after the same version check the SQL side makes)
and records the projection's offsets in the Kafka partitions they came from, atomically:
a redelivered or repeated event changes nothing twice. The script builds the
per-tenant key names from the status hash it reads, in the layout `RedisKeys` documents; every
key a notification touches is on one Redis server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis

from infrastructure.redis_keys import RECENT_KEPT, RedisKeys
from projections.notifications.view import Applied

# KEYS[1]: the projection's offsets hash, which must exist (see redis_models.py). ARGV: the
# key prefix, how many recent ids to keep, the number of (partition, next offset) pairs and
# the pairs, then one record per event: id, version, event name, new status, recent score
# ('' unless created or restored), the number of (field, value) pairs and the pairs.
_APPLY = """
-- No offsets hash, no whole models (Redis restarted empty): write nothing, say so.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local prefix, kept = ARGV[1], tonumber(ARGV[2])
local i = 4
for _ = 1, tonumber(ARGV[3]) do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local applied = 0
while i <= #ARGV do
  local id, version, name, status, score = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2],
    ARGV[i + 3], ARGV[i + 4]
  local first, count = i + 6, tonumber(ARGV[i + 5])
  i = first + 2 * count
  local key = prefix .. 'n:' .. id
  local current = tonumber(redis.call('HGET', key, 'version') or '0')
  -- A notification restored from an archive comes back at its stream's version, whatever
  -- came before: only a missing hash takes it.
  local restored = score ~= '' and version > 1 and current == 0
  if current == version - 1 and status == 'archived' then
    -- It leaves the Redis models: its hash, its place among the recipient's recent ones,
    -- its unread count and its status count; the event is still counted.
    applied = applied + 1
    local old = redis.call('HMGET', key, 'status', 'tenant_id', 'recipient_hash')
    local dashboard = prefix .. 'dashboard:' .. old[2]
    redis.call('HINCRBY', dashboard, 'events:' .. name, 1)
    redis.call('HINCRBY', dashboard, 'status:' .. old[1], -1)
    if old[1] == 'sent' or old[1] == 'delivered' then
      local unread = prefix .. 'unread:' .. old[2]
      if redis.call('HINCRBY', unread, old[3], -1) <= 0 then redis.call('HDEL', unread, old[3]) end
    end
    redis.call('ZREM', prefix .. 'recent:' .. old[2] .. ':' .. old[3], id)
    redis.call('DEL', key)
  elseif current == version - 1 or restored then
    applied = applied + 1
    local old = redis.call('HMGET', key, 'status', 'tenant_id', 'recipient_hash')
    if count > 0 then redis.call('HSET', key, unpack(ARGV, first, first + 2 * count - 1)) end
    redis.call('HSET', key, 'status', status, 'version', version)
    local tenant = old[2] or redis.call('HGET', key, 'tenant_id')
    local recipient = old[3] or redis.call('HGET', key, 'recipient_hash')
    local dashboard = prefix .. 'dashboard:' .. tenant
    local recent = prefix .. 'recent:' .. tenant .. ':' .. recipient
    redis.call('HINCRBY', dashboard, 'events:' .. name, 1)
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
    if score ~= '' then
      redis.call('ZADD', recent, score, id)
      redis.call('ZREMRANGEBYRANK', recent, 0, -kept - 1)
    end
    if status == 'erased' then redis.call('ZREM', recent, id) end
  end
end
return applied
"""
REPAIRED_AT = "repaired_at"  # the offsets hash's one field that is not a partition (redis_models)
CHUNK = 1000  # events per Lua call: a long call would hold up every other Redis client


def text(value: Any) -> str:
    """A field value as the status hash stores it: '' for none, ISO 8601 for times, hex for
    bytes (the recipient's keyed hash)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class RedisModelsLostError(Exception):
    """Redis no longer holds the projection's models: they are to be rebuilt from SQL."""


class LiveModels:
    def __init__(self, client: redis.Redis, keys: RedisKeys, projection: str) -> None:
        self.client = client
        self.keys = keys
        self._client = client
        self._keys = keys
        self._script = client.register_script(_APPLY)
        self._offsets = keys.offsets(projection)

    def apply(self, items: list[tuple[Applied, str, int | None, int | None]]) -> int:
        """Apply (change, event name, partition, next offset) items, in stream and version
        order, in one round trip; returns how many were applied rather than skipped."""
        if not items:
            return 0
        offsets: dict[int, int] = {}
        for _, _, partition, next_offset in items:
            if partition is not None and next_offset is not None:
                offsets[partition] = max(offsets.get(partition, 0), next_offset)
        pipe = self._client.pipeline(transaction=False)
        for start in range(0, len(items), CHUNK):
            # The offsets go with the last chunk, once everything before them is applied.
            last = start + CHUNK >= len(items)
            pairs = [v for p, o in sorted(offsets.items()) for v in (p, o)] if last else []
            args: list[Any] = [self._keys.prefix, RECENT_KEPT, len(pairs) // 2, *pairs]
            for item, name, _, _ in items[start : start + CHUNK]:
                args += self._record(item, name)
            self._script(keys=[self._offsets], args=args, client=pipe)
        results = [int(result) for result in pipe.execute()]
        if min(results) < 0:
            raise RedisModelsLostError(self._offsets)
        return sum(results)

    def invalidate_lists(self, tenants: set[str]) -> None:
        """Move the list version of each tenant whose notifications changed, once the change
        is committed in PostgreSQL: lists cached under the old version are never read again,
        and a list read under the new one sees the change."""
        if tenants:
            pipe = self._client.pipeline(transaction=False)
            for tenant in sorted(tenants):
                pipe.incr(self._keys.list_version(tenant))
            pipe.execute()

    def offsets(self) -> dict[int, int] | None:
        """Partition to the next offset the Redis models have read there; None when Redis
        has lost the models (no offsets hash)."""
        stored = self._client.hgetall(self._offsets)
        if not stored:
            return None
        return {int(p): int(o) for p, o in stored.items() if p != REPAIRED_AT.encode()}

    def ping(self) -> bool:
        return bool(self._client.ping())

    @staticmethod
    def _record(item: Applied, name: str) -> list[Any]:
        change = item.change
        fields: list[str] = ["updated_at", text(item.at), "position", str(item.position)]
        if change.created:
            fields += ["attempts", "0"]
        for column, value in change.fields.items():
            if column != "created_position":  # the hash has no use for it
                fields += [column, text(value)]
        requested: datetime = change.fields.get("requested_at", item.at)
        recent = str(int(requested.timestamp() * 1000)) if change.created else ""
        return [
            str(item.stream_id),
            item.version,
            name,
            change.status,
            recent,
            len(fields) // 2,
            *fields,
        ]
