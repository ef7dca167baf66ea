"""The dispatch-queue projection's consumer: a member of the Kafka consumer group
`{ns}.dispatcher` that turns notification events into `dispatch_queue` rows and copies each
dead letter to `{ns}.notifications.dlq.v1`. It commits its offsets only after both are done,
so a crash repeats a batch, which changes nothing twice (rows are version-guarded, and the
dead-letter topic is keyed by notification id)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from domain.notifications.events import NotificationDeadLettered
from infrastructure.eventstore.codec import EventCodec
from infrastructure.kafka.topics import (
    DISPATCHER_GROUP,
    consumer_group,
    dead_letter_topic,
    notifications_topic,
)
from infrastructure.kafka.wire import (
    Published,
    consumer_config,
    consuming,
    decode_published,
    headers_of,
    log_each,
    next_batch,
    producer_config,
)
from infrastructure.log import get_logger
from infrastructure.resuming import LOST_SERVER
from infrastructure.settings import Settings, require_servers
from projections.dispatch_queue.effects import Effect, apply_effects, effect_of

log = get_logger(__name__)

BATCH = 1000
POLL_S = 0.2


class DeadLetter(msgspec.Struct, frozen=True):
    """The message on the dead-letter topic: enough to act on without reading the log."""

    notification_id: str
    tenant_id: str
    reason: str
    position: int
    dead_lettered_at: datetime


class DispatchQueueProjection:
    """Runs in a thread of the dispatcher role; `on_due` wakes the dispatcher's workers when
    a batch made some notification due now. It must be safe to call from this thread."""

    def __init__(self, settings: Settings, codec: EventCodec, on_due: Callable[[], None]) -> None:
        self._database_url, _, self._bootstrap = require_servers(settings)
        self._namespace = settings.namespace
        self._codec = codec
        self._on_due = on_due

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set. A lost server is raised, for the role to resume; any
        other failure is logged and sets `stop` for the whole role."""
        topic = notifications_topic(self._namespace)
        group = consumer_group(self._namespace, DISPATCHER_GROUP)
        consumer = Consumer(consumer_config(self._bootstrap, group))
        producer = Producer(producer_config(self._bootstrap))

        def assigned(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            log.info("partitions assigned", partitions=sorted(p.partition for p in partitions))

        def revoked(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            log.info("partitions revoked", partitions=sorted(p.partition for p in partitions))

        consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)
        try:
            with psycopg.connect(self._database_url, autocommit=True) as conn:
                while not stop.is_set():
                    messages = next_batch(consumer, BATCH, timeout=POLL_S)
                    if messages:
                        decoded = decode_published(messages, self._codec)
                        with consuming("dispatch_queue.apply", topic, headers_of(decoded)):
                            self._consume_batch(conn, consumer, producer, messages, decoded)
                        log_each(__name__, "queue updated", headers_of(decoded))
        except LOST_SERVER:
            raise  # the role starts this loop again once the server answers
        except Exception:
            log.exception("dispatch consumer failed; stopping")
            stop.set()
        finally:
            consumer.close()

    def _consume_batch(
        self,
        conn: psycopg.Connection[Any],
        consumer: Consumer,
        producer: Producer,
        messages: list[Message],
        decoded: list[Published | None],
    ) -> None:
        effects: dict[UUID, tuple[int, Effect]] = {}
        dead: list[tuple[Published, NotificationDeadLettered, Any]] = []
        for message, published in zip(messages, decoded, strict=True):
            if published is None:
                continue
            event, stream_id, version = published.event, published.stream_id, published.version
            effect = effect_of(event)
            if effect is not None:
                seen = effects.get(stream_id)
                if seen is None or seen[0] < version:
                    effects[stream_id] = (version, effect)
            if isinstance(event, NotificationDeadLettered):
                dead.append((published, event, message.headers()))
        due_now = apply_effects(conn, effects) if effects else 0
        for published, event, headers in dead:
            letter = DeadLetter(
                notification_id=str(published.stream_id),
                tenant_id=event.tenant_id,
                reason=event.reason,
                position=published.position,
                dead_lettered_at=event.at,
            )
            producer.produce(
                dead_letter_topic(self._namespace),
                key=letter.notification_id,  # as on the notification topic
                value=msgspec.json.encode(letter),
                headers=headers,
            )
        if dead and producer.flush(30) > 0:
            raise RuntimeError("the broker did not take every dead letter")
        consumer.commit(asynchronous=False)
        if due_now:
            self._on_due()
