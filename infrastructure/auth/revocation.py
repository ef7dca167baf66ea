"""Revoked tokens and refresh-token families, kept in Redis and mirrored in every process.

Checking an access token must cost no round trip, so each process keeps a local copy of
the denylist: it subscribes to a Redis channel first, then loads what is already revoked,
and from then on every revocation published by any process reaches it. Entries expire
with the tokens they deny. Two kinds of entry exist: one token (`jti`, on logout), and
every token of a user issued before a moment (`user`, when a user is disabled, erased or
loses a role).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from infrastructure.log import get_logger

log = get_logger(__name__)

CHANNEL = "herald:revocations"
_JTI = "herald:revoked:jti:"
_USER = "herald:revoked:user:"
REFRESH_FAMILY_PREFIX = "herald:refresh:family:"
REFRESH_TOKEN_PREFIX = "herald:refresh:jti:"  # noqa: S105 - a key prefix, not a secret


class Revocations:
    def __init__(self, client: aioredis.Redis, access_ttl_s: int) -> None:
        self._redis = client
        self._access_ttl_s = access_ttl_s
        self._tokens: dict[str, float] = {}  # jti -> when the entry can be forgotten
        self._users: dict[str, tuple[float, float]] = {}  # user -> (revoked up to, forget at)
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()

    # -- checks, local only --------------------------------------------------------------
    def is_revoked(self, jti: str | None, user_id: str, issued_at: float | None) -> bool:
        now = time.time()
        if jti is not None:
            forget_at = self._tokens.get(jti)
            if forget_at is not None:
                if forget_at > now:
                    return True
                del self._tokens[jti]
        entry = self._users.get(user_id)
        if entry is not None and issued_at is not None:
            before, forget_at = entry
            if forget_at <= now:
                del self._users[user_id]
            elif issued_at <= before:
                return True
        return False

    # -- revoking: Redis first, so a process that restarts finds it --------------------------
    async def revoke_token(self, jti: str, expires_at: int) -> None:
        ttl = max(1, expires_at - int(time.time()))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_JTI + jti, expires_at, ex=ttl)
            pipe.publish(CHANNEL, f"jti {jti} {expires_at}")
            await pipe.execute()
        self._tokens[jti] = float(expires_at)

    async def revoke_user(self, user_id: str) -> None:
        """Deny every access token of `user_id` issued up to now."""
        now = round(time.time(), 3)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_USER + user_id, now, ex=self._access_ttl_s + 60)
            pipe.publish(CHANNEL, f"user {user_id} {now}")
            await pipe.execute()
        self._remember_user(user_id, now)

    def _remember_user(self, user_id: str, before: float) -> None:
        self._users[user_id] = (before, time.time() + self._access_ttl_s + 60)

    # -- mirroring -----------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="revocations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    await self._load_snapshot()
                    self.synced.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._apply(message["data"])
            except (RedisError, OSError) as exc:
                self.synced.clear()
                log.warning("revocation feed lost; retrying", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _load_snapshot(self) -> None:
        async for key in self._redis.scan_iter(match=_JTI + "*", count=1000):
            value = await self._redis.get(key)
            if value is not None:
                self._tokens[_suffix(key, _JTI)] = float(value)
        async for key in self._redis.scan_iter(match=_USER + "*", count=1000):
            value = await self._redis.get(key)
            if value is not None:
                self._remember_user(_suffix(key, _USER), float(value))

    def _apply(self, data: Any) -> None:
        kind, subject, stamp = (data.decode() if isinstance(data, bytes) else str(data)).split()
        if kind == "jti":
            self._tokens[subject] = float(stamp)
        elif kind == "user":
            self._remember_user(subject, float(stamp))


def _suffix(key: Any, prefix: str) -> str:
    text = key.decode() if isinstance(key, bytes) else str(key)
    return text[len(prefix) :]


# One refresh token may be exchanged once. Presenting it again means it was copied: the
# whole family (every token descended from the same login) is revoked.
_ROTATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('DEL', KEYS[2]) == 1 then return 1 end
redis.call('DEL', KEYS[1])
return -1
"""


class RefreshTokens:
    """Which refresh tokens are live, grouped in families that die together."""

    ROTATED, FAMILY_REVOKED, REUSED = 1, 0, -1

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._rotate = client.register_script(_ROTATE)

    async def remember(self, family: str, jti: str, user_id: str, ttl_s: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(REFRESH_FAMILY_PREFIX + family, user_id, ex=ttl_s)
            pipe.set(REFRESH_TOKEN_PREFIX + jti, family, ex=ttl_s)
            await pipe.execute()

    async def rotate(self, family: str, jti: str) -> int:
        """Consume `jti`: ROTATED if it was live, REUSED (family now revoked) or FAMILY_REVOKED."""
        keys = [REFRESH_FAMILY_PREFIX + family, REFRESH_TOKEN_PREFIX + jti]
        return int(cast(int, await self._rotate(keys=keys)))

    async def revoke_family(self, family: str) -> None:
        await self._redis.delete(REFRESH_FAMILY_PREFIX + family)
