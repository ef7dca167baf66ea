"""Whether the projector may write its Redis models as they are, and their rebuild from
PostgreSQL once Redis has lost them.

Redis is lost when it is out of reach or answers without the projection's offsets hash (it
restarted empty). From then on the projector writes PostgreSQL alone; once a second it asks
Redis, from the writer thread so that a Redis that hangs never holds up the SQL models,
whether it answers again, and then rebuilds the Redis models from the SQL ones
(`redis_models.repair`) before writing there again. While the models are whole it asks as
often whether the offsets hash is still there, so that an idle projector notices a Redis
that restarted empty too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import redis

from infrastructure.eventstore.tracking import NOTIFICATIONS_PROJECTION
from infrastructure.log import get_logger
from infrastructure.metrics import REDIS_MODELS_REBUILT
from projections.notifications.live import LiveModels, RedisModelsLostError
from projections.notifications.redis_models import repair

log = get_logger(__name__)

REDIS_TIMEOUT_S = 2.0  # to connect to Redis; a call once connected may take as long as it takes
CHECK_S = 1.0
# Redis failing this way is Redis gone or emptied; any other error is a fault to surface.
LOST = (redis.ConnectionError, redis.TimeoutError, RedisModelsLostError)


class RedisWatch:
    def __init__(
        self, live: LiveModels, writer: ThreadPoolExecutor, *, names: list[str], topic: str
    ) -> None:
        self._live = live
        self._writer = writer
        self._names = names
        self._topic = topic
        self._checked_at = 0.0
        self._probe: Future[Any] | None = None
        self.whole = False  # whether the Redis models may be written as they are
        self._answered = False
        try:
            self.whole = live.offsets() is not None
            self._answered = True
        except LOST as exc:
            self._checked_at = time.monotonic()
            log.warning(
                "Redis out of reach; projecting to PostgreSQL alone until it is back",
                projection=NOTIFICATIONS_PROJECTION,
                error=f"{type(exc).__name__}: {exc}",
            )

    def begin(self, conn: psycopg.Connection[Any]) -> None:
        """Before the first round: models that a Redis in reach does not have (a new
        deployment, or Redis restarted empty while no projector ran) are built at once."""
        if not self.whole and self._answered:
            self._rebuild(conn)

    def offsets(self) -> dict[int, int] | None:
        """The Redis models' offsets per partition; None when they are to be rebuilt."""
        try:
            offsets = self._live.offsets()
        except LOST as exc:
            self.lose(exc)
            return None
        if offsets is None:
            self.lose(RedisModelsLostError("no offsets hash"))
        return offsets

    def write(self, write: Callable[[Any], object], argument: Any) -> None:
        """Make a write to Redis, or note that Redis is lost."""
        try:
            write(argument)
        except LOST as exc:
            self.lose(exc)

    def lose(self, exc: BaseException) -> None:
        if self.whole:
            log.warning(
                "Redis models lost; projecting to PostgreSQL alone until Redis is back",
                projection=NOTIFICATIONS_PROJECTION,
                error=f"{type(exc).__name__}: {exc}",
            )
        self.whole = False
        self._checked_at = time.monotonic()

    def mind(self, conn: psycopg.Connection[Any]) -> None:
        """Called every round: at most once a second, ask Redis; act on its last answer."""
        probe, now = self._probe, time.monotonic()
        if probe is None:
            if now - self._checked_at >= CHECK_S:
                ask = self._live.offsets if self.whole else self._live.ping
                self._probe = self._writer.submit(ask)
            return
        if not probe.done():
            return
        self._probe, self._checked_at = None, now
        failed = probe.exception()
        if self.whole:
            if failed is None and probe.result() is None:
                self.lose(RedisModelsLostError("no offsets hash"))
            elif isinstance(failed, LOST):
                self.lose(failed)
        elif failed is None:
            self._rebuild(conn)

    def _rebuild(self, conn: psycopg.Connection[Any]) -> None:
        started = time.perf_counter()
        try:
            repaired = repair(
                conn,
                self._live.client,
                self._live.keys,
                names=self._names,
                projection=NOTIFICATIONS_PROJECTION,
                topic=self._topic,
            )
        except LOST:
            return  # lost again: asked again in a second
        self.whole = True
        REDIS_MODELS_REBUILT.labels("notifications").inc()
        log.info(
            "Redis models rebuilt from PostgreSQL",
            projection=NOTIFICATIONS_PROJECTION,
            status_hashes=repaired.hashes,
            seconds=round(time.perf_counter() - started, 3),
        )
