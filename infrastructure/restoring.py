"""What the followers of a restored database need before they resume: Kafka holding the
restored log and nothing else, and Redis holding no read model from before the restore.

The broker and Redis outlive a restore. Kafka still holds events from after the backup,
under positions that the restored log will give to other events; consumers would apply
them. So the namespace's topics are deleted and made again, and the relay publishes the
whole log from position 0 into them. The projection's partition offsets (kept in both
PostgreSQL and Redis) name offsets of the deleted topic, so they go too, and with them
every Redis key of the namespace: a rebuild then fills Redis from the restored log alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import redis
from confluent_kafka import KafkaException

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.eventstore.tracking import read_position, save_position
from infrastructure.kafka.topics import admin_client, ensure_topics, topic_layout
from infrastructure.redis_keys import RedisKeys
from infrastructure.relay import TRACKING_NAME, Relay
from infrastructure.settings import Settings, require_servers

TOPIC_GONE_TIMEOUT_S = 30.0
BATCH = 1000  # Redis keys deleted per call
REPUBLISH_STALL_S = 120.0  # no progress this long: the broker is not taking the events

_PUBLISHED_HEAD = (
    "SELECT coalesce(max(notification_id), 0), count(*) FROM "  # noqa: S608 - a constant
    f"{EVENTS_TABLE} WHERE split_part(topic, '@', 1) = ANY(%s)"
)


class RestoringError(Exception):
    """A follower could not be made to agree with the restored log; says why, in one line."""


def forget_followers(conn: psycopg.Connection[Any]) -> None:
    """The relay starts again from position 0; the projection's offsets (of topics about to
    be made again) are forgotten, so its consumers start each partition from the beginning."""
    with conn.transaction():
        save_position(conn, TRACKING_NAME, 0)
        conn.execute("DELETE FROM projection_offsets")


def clear_redis(redis_url: str, namespace: str, progress: Callable[[int], None]) -> int:
    """Delete every key of the namespace; returns how many."""
    client = redis.Redis.from_url(redis_url)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{RedisKeys(namespace).prefix}*", count=BATCH):
            batch.append(key)
            if len(batch) >= BATCH:
                deleted += int(client.unlink(*batch))
                batch.clear()
                progress(deleted)
        if batch:
            deleted += int(client.unlink(*batch))
        progress(deleted)
        return deleted
    finally:
        client.close()


def remake_topics(bootstrap: str, namespace: str, partitions: int) -> None:
    """Delete the namespace's topics (with every consumer group's offsets in them) and make
    them again, empty."""
    layout = topic_layout(namespace, partitions)
    admin = admin_client(bootstrap)
    try:
        existing = set(admin.list_topics(timeout=10).topics)
        doomed = [t.name for t in layout if t.name in existing]
        if doomed:
            for future in admin.delete_topics(doomed, operation_timeout=10).values():
                future.result(timeout=10)
        deadline = time.monotonic() + TOPIC_GONE_TIMEOUT_S
        while set(doomed) & set(admin.list_topics(timeout=10).topics):
            if time.monotonic() > deadline:
                raise RestoringError(f"the broker has not deleted {', '.join(doomed)}")
            time.sleep(0.2)
        ensure_topics(bootstrap, layout)
    except KafkaException as exc:
        raise RestoringError(f"the broker at {bootstrap}: {exc.args[0]}") from None


def republish(
    settings: Settings,
    codec: EventCodec,
    names: list[str],
    progress: Callable[[int, int], None],
) -> int:
    """Publish the log from the relay's position (0 after `forget_followers`) up to its head,
    with the relay's own code, then stop; returns how many events were published."""
    database_url, _, _ = require_servers(settings)
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(_PUBLISHED_HEAD, (names,)).fetchone()
        target, total = (int(row[0]), int(row[1])) if row else (0, 0)
        relay = Relay(settings, codec, names)
        stop = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                relay.run(stop)
            except BaseException as exc:  # handed to the waiting thread
                failure.append(exc)

        thread = threading.Thread(target=run, name="republish", daemon=True)
        thread.start()
        try:
            published, moved_at = -1, time.monotonic()
            while True:
                position = read_position(conn, TRACKING_NAME)
                if relay.published != published:
                    published, moved_at = relay.published, time.monotonic()
                    progress(min(published, total), total)
                if position >= target:
                    break
                if failure:
                    raise RestoringError(f"republishing failed: {failure[0]}")
                if time.monotonic() - moved_at > REPUBLISH_STALL_S:
                    raise RestoringError(
                        f"republishing stalled at position {position} of {target}:"
                        " is the broker up?"
                    )
                time.sleep(0.1)
        finally:
            stop.set()
            thread.join(timeout=30)
        progress(total, total)
        return relay.published
