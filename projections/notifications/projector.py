"""The notifications projection: Kafka to the SQL and Redis read models, with the log behind it.

Live path. The projector is one member of a consumer group on the notifications topic, so
projectors scale out by partitions. Each round applies a batch of messages to Redis (one Lua
call per event, which also records the partition offset), then to PostgreSQL in one
transaction with the partition offsets. On assignment it resumes from the lower of the two
stores' offsets, so a crash between them repeats a little and loses nothing; the version
checks make the repeat change nothing. Offsets are also committed to Kafka, for lag reports.

Frontier. The projection's position in the global log is the highest position up to which
every notification event is reflected in `notification_view`. The projector moves it (by
compare-and-set in `tracking`) as it checks the log against the view; `projections status`
and read-your-writes use it.

Redis lost. The SQL models never wait for Redis. When Redis is out of reach, or comes back
without the models (the offsets hash is gone), the projector goes on with PostgreSQL alone
and, once Redis answers again, rebuilds the Redis models from the SQL ones before writing
there again (`redis_models.py`); the api reads from SQL meanwhile.

Catch-up. When the frontier has not moved for `GRACE_S` while an event past it is missing
(Kafka lags, lost its data, or the relay is down), the projector reads the log from the
event store itself and applies it, round after round, until nothing is missing. No read
model can stop short of the log without the frontier saying so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.eventstore.tracking import (
    NOTIFICATIONS_PROJECTION,
    advance,
    read_after,
    stored_position,
)
from infrastructure.kafka.topics import PROJECTOR_GROUP, consumer_group, notifications_topic
from infrastructure.kafka.wire import (
    consumer_config,
    consuming,
    decode_published,
    log_each,
)
from infrastructure.log import get_logger
from infrastructure.metrics import PROJECTION_EVENTS
from infrastructure.redis_keys import RedisKeys
from infrastructure.settings import Settings, require_servers
from projections.notifications import view
from projections.notifications.changes import change_for
from projections.notifications.live import LiveModels
from projections.notifications.redis_watch import REDIS_TIMEOUT_S, RedisWatch
from projections.notifications.view import Applied

log = get_logger(__name__)

NAME = NOTIFICATIONS_PROJECTION
BATCH = 5000
POLL_S = 0.05
GRACE_S = 2.0
DEADLOCK_RETRIES = 5
RESET_CHECK_S = 1.0

# An event is reflected when its notification's row has reached its version, or when the
# notification was archived at or after it (its row is gone for good).
_FRONTIER = (
    "SELECT e.notification_id,"  # noqa: S608
    " coalesce(v.version >= e.originator_version, a.version >= e.originator_version, false)"
    f" FROM {EVENTS_TABLE} e LEFT JOIN notification_view v"
    " ON v.notification_id = e.originator_id"
    " LEFT JOIN archived_notifications a ON a.notification_id = e.originator_id"
    " WHERE e.notification_id > %s AND split_part(e.topic, '@', 1) = ANY(%s)"
    " ORDER BY e.notification_id LIMIT %s"
)


@dataclass(frozen=True, slots=True)
class _Item:
    applied: Applied
    name: str  # event type
    partition: int | None  # None when read from the event store
    next_offset: int | None
    headers: Mapping[str, str]  # of its message; empty when read from the event store


def _headers(items: Iterable[_Item]) -> Iterator[Mapping[str, str]]:
    return (item.headers for item in items)


class NotificationsProjector:
    def __init__(self, settings: Settings, codec: EventCodec, event_names: list[str]) -> None:
        self._database_url, self._redis_url, self._bootstrap = require_servers(settings)
        self._topic = notifications_topic(settings.namespace)
        self._group = consumer_group(settings.namespace, PROJECTOR_GROUP)
        self._keys = RedisKeys(settings.namespace)
        self._codec = codec
        self._names = list(event_names)
        self._frontier = 0
        self._stalled_since: float | None = None
        # Joining the consumer group takes seconds; the log is right here. Start by catching
        # up from it, and leave the rest to Kafka once nothing is missing.
        self._catching_up = True
        self._assigned = False  # whether Kafka gives this projector any partition
        self._checked_at = 0.0
        self.applied = {"kafka": 0, "store": 0}
        # Seconds per stage, for benchmarks: waiting on Kafka, decoding, writing Redis,
        # writing PostgreSQL, checking the frontier.
        self.seconds = dict.fromkeys(("consume", "decode", "redis", "sql", "frontier"), 0.0)

    def run(self, stop: threading.Event) -> None:
        # Made here, not once: a run that lost a server is started again (resuming).
        self._redis_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-writer")
        # No read timeout: a slow Redis only slows the projector. Taking it for a lost one
        # would rebuild its models while readers still read them, stale.
        client = redis.Redis.from_url(self._redis_url, socket_connect_timeout=REDIS_TIMEOUT_S)
        live = LiveModels(client, self._keys, NAME)
        self._redis = RedisWatch(live, self._redis_writer, names=self._names, topic=self._topic)
        consumer = Consumer(consumer_config(self._bootstrap, self._group))
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            self._frontier = stored_position(conn, NAME)
            log.info("projection starting", projection=NAME, position=self._frontier)
            self._redis.begin(conn)

            def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
                self._resume(conn, live, consumer, partitions)
                self._assigned = bool(partitions)

            def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
                self._assigned = False
                consumer.unassign()

            consumer.subscribe(
                [self._topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke
            )
            try:
                while not stop.is_set():
                    started = time.perf_counter()
                    messages = consumer.consume(BATCH, timeout=POLL_S)
                    decoding = time.perf_counter()
                    items = self._decode(messages)
                    self._clock("consume", started, decoding)
                    self._clock("decode", decoding, time.perf_counter())
                    if items:
                        with consuming("projector.apply", self._topic, _headers(items)):
                            self._apply(conn, live, items)
                        log_each(__name__, "applied", _headers(items))
                        self.applied["kafka"] += len(items)
                        PROJECTION_EVENTS.labels("notifications").inc(len(items))
                        consumer.commit(asynchronous=True)
                    following = time.perf_counter()
                    self._follow(conn, live)
                    self._clock("frontier", following, time.perf_counter())
                    self._redis.mind(conn)
            finally:
                consumer.close()
                self._redis_writer.shutdown()
                client.close()

    def _clock(self, stage: str, started: float, ended: float) -> None:
        self.seconds[stage] += ended - started

    def _resume(
        self,
        conn: psycopg.Connection[Any],
        live: LiveModels,
        consumer: Consumer,
        partitions: list[TopicPartition],
    ) -> None:
        """Start each assigned partition where both stores have got to."""
        in_sql = dict(
            conn.execute(
                "SELECT partition, next_offset FROM projection_offsets"
                " WHERE projection = %s AND topic = %s",
                (NAME, self._topic),
            ).fetchall()
        )
        in_redis = self._redis.offsets()
        for tp in partitions:
            sql = in_sql.get(tp.partition)
            # Redis models to be rebuilt from SQL follow SQL's offsets.
            red = in_redis.get(tp.partition) if in_redis is not None else sql
            # A store that has never seen the partition starts it from the beginning.
            tp.offset = min(sql, red) if sql is not None and red is not None else OFFSET_BEGINNING
        consumer.assign(partitions)
        log.info("partitions assigned", partitions={tp.partition: tp.offset for tp in partitions})

    def _decode(self, messages: list[Message]) -> list[_Item]:
        items = []
        for message, published in zip(
            messages, decode_published(messages, self._codec), strict=True
        ):
            if published is None:
                continue
            event = published.event
            applied = Applied(
                change_for(event, self._codec.recipient_hash),
                published.stream_id,
                published.version,
                published.position,
                event.at,
            )
            offset = (message.offset() or 0) + 1
            partition = message.partition()
            items.append(_Item(applied, published.name, partition, offset, published.headers))
        return items

    def _apply(self, conn: psycopg.Connection[Any], live: LiveModels, items: list[_Item]) -> None:
        """Apply a round to Redis (in a helper thread) and PostgreSQL at the same time: the
        stores track their offsets and versions separately, so neither waits for the other."""
        # Stream order fixes the order rows are locked in, so concurrent projectors never
        # deadlock on them; within a stream, versions stay in order.
        items.sort(key=lambda item: (item.applied.stream_id.int, item.applied.version))
        started = time.perf_counter()
        redis_done = (
            self._redis_writer.submit(
                self._timed,
                "redis",
                live.apply,
                [(i.applied, i.name, i.partition, i.next_offset) for i in items],
            )
            if self._redis.whole
            else None
        )
        offsets: dict[int, int] = {}
        for item in items:
            if item.partition is not None and item.next_offset is not None:
                offsets[item.partition] = max(offsets.get(item.partition, 0), item.next_offset)
        try:
            for attempt in range(DEADLOCK_RETRIES):
                try:
                    with conn.transaction():
                        tenants = view.apply(conn, [item.applied for item in items])
                        self._save_offsets(conn, offsets)
                    self._clock("sql", started, time.perf_counter())
                    # Even while its models are being rebuilt, a Redis that answers must
                    # stop serving list pages cached before this commit.
                    self._redis.write(live.invalidate_lists, tenants)
                except psycopg.errors.DeadlockDetected:
                    log.warning("deadlock applying a round; retrying", attempt=attempt + 1)
                    continue
                return
            raise RuntimeError(f"a round deadlocked {DEADLOCK_RETRIES} times")
        finally:
            if redis_done is not None:
                self._redis.write(lambda _: redis_done.result(), None)

    def _timed(self, stage: str, work: Callable[[Any], int], argument: Any) -> int:
        started = time.perf_counter()
        try:
            return work(argument)
        finally:
            self._clock(stage, started, time.perf_counter())

    def _save_offsets(self, conn: psycopg.Connection[Any], offsets: dict[int, int]) -> None:
        if not offsets:
            return
        partitions = sorted(offsets)
        conn.execute(
            "INSERT INTO projection_offsets (projection, topic, partition, next_offset)"
            " SELECT %s, %s, * FROM unnest(%b::int[], %b::bigint[])"
            " ON CONFLICT (projection, topic, partition)"
            " DO UPDATE SET next_offset = EXCLUDED.next_offset",
            (NAME, self._topic, partitions, [offsets[p] for p in partitions]),
        )

    def _follow(self, conn: psycopg.Connection[Any], live: LiveModels) -> None:
        """Move the frontier over what the view reflects; catch up from the log if stalled."""
        while True:
            rows = conn.execute(_FRONTIER, (self._frontier, self._names, BATCH)).fetchall()
            reached = self._frontier
            for position, applied in rows:
                if not applied:
                    break
                reached = position
            if reached > self._frontier:
                self._move_frontier(conn, reached)
                self._stalled_since = time.monotonic()
            if not rows or reached == rows[-1][0]:  # nothing missing in what was read
                self._stalled_since = None
                self._catching_up = False
                if not rows:
                    self._notice_reset(conn)
                if len(rows) < BATCH:
                    return
                continue
            now = time.monotonic()
            if self._stalled_since is None:
                self._stalled_since = now
            # Without partitions (still joining, or more projectors than partitions) Kafka
            # brings nothing: the log is the only source, so there is nothing to wait for.
            if self._catching_up or not self._assigned or now - self._stalled_since >= GRACE_S:
                if not self._catching_up:
                    log.info("catching up from the event store", position=self._frontier)
                self._catching_up = True
                self._catch_up(conn, live)
            return

    def _notice_reset(self, conn: psycopg.Connection[Any]) -> None:
        """Once a second while idle, adopt a position someone else set (a rebuild's swap)."""
        now = time.monotonic()
        if now - self._checked_at < RESET_CHECK_S:
            return
        self._checked_at = now
        stored = stored_position(conn, NAME)
        if stored != self._frontier:
            log.info("projection position was reset", position=stored, was=self._frontier)
            self._frontier = stored

    def _move_frontier(self, conn: psycopg.Connection[Any], position: int) -> None:
        if advance(conn, NAME, self._frontier, position):
            self._frontier = position
        else:  # another projector moved it, or it was reset: go from there
            self._frontier = stored_position(conn, NAME)

    def _catch_up(self, conn: psycopg.Connection[Any], live: LiveModels) -> None:
        rows = read_after(conn, self._frontier, self._names, BATCH)
        events = self._codec.decode_many([(topic, state) for *_, topic, state in rows])
        items = []
        for (position, stream_id, version, _, _), event in zip(rows, events, strict=True):
            change = change_for(event, self._codec.recipient_hash)
            applied = Applied(change, stream_id, version, position, event.at)
            items.append(_Item(applied, type(event).__name__, None, None, {}))
        if items:
            self._apply(conn, live, items)
            self.applied["store"] += len(items)
            PROJECTION_EVENTS.labels("notifications").inc(len(items))
