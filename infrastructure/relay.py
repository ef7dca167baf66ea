"""The outbox relay: follows the event store's global log and publishes to Kafka, in order.

Every notification event goes to `herald.notifications.v1`, keyed by notification id so one
notification's events stay in one partition, in order. The relay stores its position in
PostgreSQL only after the broker acknowledged everything up to it, so a crash repeats at
most the unacknowledged tail: delivery is at least once, and the position header is the
key consumers deduplicate by.

The embedded broker keeps nothing across restarts. The relay notices (the topic is gone,
or its newest message carries an older position than the relay's own) and publishes again
from what the broker still has. `herald relay reset --from POSITION` does it by hand.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry.trace import Span, SpanKind, StatusCode

from infrastructure.eventstore.codec import EventCodec
from infrastructure.eventstore.store import EVENTS_TABLE
from infrastructure.eventstore.tracking import (
    RELAY,
    advance,
    read_after,
    save_position,
    stored_position,
)
from infrastructure.kafka.topics import (
    ensure_topics,
    notifications_topic,
    partition_count,
    topic_layout,
)
from infrastructure.kafka.wire import (
    Headers,
    broker_position,
    log_each,
    message_attributes,
    outgoing,
    producer_config,
)
from infrastructure.log import get_logger
from infrastructure.metrics import RELAY_PUBLISHED
from infrastructure.settings import Settings
from infrastructure.tracing import sampled_parent, start_span, traceparent_of, tracing

log = get_logger(__name__)

TRACKING_NAME = RELAY
BATCH = 20_000
IDLE_WAIT_S = 0.5
FLUSH_TIMEOUT_S = 10.0


class DeliveryFailedError(Exception):
    """The broker did not acknowledge every message of a batch."""


@dataclass
class _Delivery:
    failed: int = 0
    error: str | None = None
    spans: list[Span] = field(default_factory=list)  # each traced message's publish

    def __call__(self, err: KafkaError | None, _message: Message) -> None:
        if err is not None:
            self.failed += 1
            self.error = str(err)


class Relay:
    def __init__(self, settings: Settings, codec: EventCodec, event_names: Sequence[str]) -> None:
        if settings.database_url is None or settings.kafka_bootstrap is None:
            raise ValueError("the relay needs HERALD_DATABASE_URL and HERALD_KAFKA_BOOTSTRAP")
        self._database_url = settings.database_url.reveal()
        self._bootstrap = settings.kafka_bootstrap
        self._partitions = settings.kafka_partitions
        self._namespace = settings.namespace
        self._topic = notifications_topic(settings.namespace)
        self._codec = codec
        self._names = list(event_names)
        self.published = 0
        # Seconds spent per stage, for metrics and benchmarks: reading the log,
        # handing messages to the producer, waiting for the broker's acknowledgements.
        self.seconds = {"read": 0.0, "produce": 0.0, "acknowledge": 0.0}

    def run(self, stop: threading.Event) -> None:
        producer = Producer(producer_config(self._bootstrap))
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            position = self._reconcile(conn)
            conn.execute(f"LISTEN {EVENTS_TABLE}")
            log.info("relay following the log", position=position)
            rows = self._read(conn, position)
            while not stop.is_set():
                if not rows:
                    self._wait_for_events(conn, stop)
                    # Idle is when `herald relay reset` is noticed.
                    position = stored_position(conn, TRACKING_NAME)
                    rows = self._read(conn, position)
                    continue
                delivery = self._produce(producer, rows)
                # Read the next round while the broker acknowledges this one.
                following = self._read(conn, int(rows[-1][0]))
                try:
                    self._confirm(producer, delivery)
                except DeliveryFailedError as exc:
                    log.warning("publishing failed; checking the broker", error=str(exc))
                    # An idempotent producer's sequence state belongs to the broker it
                    # talked to; a broker that lost its data refuses it. Start afresh.
                    with contextlib.suppress(KafkaException):  # a failed producer may refuse
                        producer.purge()
                    producer = Producer(producer_config(self._bootstrap))
                    time.sleep(1.0)
                    position = self._reconcile(conn)
                    rows = self._read(conn, position)
                    continue
                self.published += len(rows)
                RELAY_PUBLISHED.inc(len(rows))
                log_each(__name__, "published", (dict(outgoing(*row)[2]) for row in rows))
                if advance(conn, TRACKING_NAME, position, int(rows[-1][0])):
                    position = int(rows[-1][0])
                    rows = following
                else:  # someone ran `herald relay reset` meanwhile: follow it
                    position = stored_position(conn, TRACKING_NAME)
                    log.warning("relay position was reset", position=position)
                    rows = self._read(conn, position)
        producer.flush(10)

    def _read(self, conn: psycopg.Connection[Any], after: int) -> list[tuple[Any, ...]]:
        started = time.perf_counter()
        rows = read_after(conn, after, self._names, BATCH)
        self.seconds["read"] += time.perf_counter() - started
        return rows

    def _produce(self, producer: Producer, rows: list[tuple[Any, ...]]) -> _Delivery:
        """Hand a round to the producer; it sends in the background."""
        delivery = _Delivery()
        started = time.perf_counter()
        traced = tracing()
        for row in rows:
            key, value, headers = outgoing(*row)
            if traced:
                headers = self._traced(headers, delivery)
            while True:
                try:
                    producer.produce(
                        self._topic, value=value, key=key, headers=headers, on_delivery=delivery
                    )
                    break
                except BufferError:
                    producer.poll(0.05)  # the local queue is full: let deliveries drain
        self.seconds["produce"] += time.perf_counter() - started
        return delivery

    def _traced(self, headers: Headers, delivery: _Delivery) -> Headers:
        """The message's headers with its publish span's `traceparent`, continuing the
        sampled trace its event was recorded in; as they were otherwise."""
        traceparent = next((v for k, v in headers if k == "traceparent"), None)
        parent = sampled_parent(traceparent) if isinstance(traceparent, str) else None
        if parent is None:
            return headers
        values = dict(headers)
        span = start_span(
            "relay.publish",
            parent=parent,
            kind=SpanKind.PRODUCER,
            attributes=message_attributes(self._topic, values),
        )
        delivery.spans.append(span)
        values["traceparent"] = traceparent_of(span.get_span_context()) or traceparent
        return list(values.items())

    def _confirm(self, producer: Producer, delivery: _Delivery) -> None:
        """Wait until the broker acknowledged the round, or raise."""
        flushing = time.perf_counter()
        try:
            remaining = producer.flush(FLUSH_TIMEOUT_S)
        except (KafkaException, SystemError) as exc:
            # A fatal producer error surfaces here, from the delivery callbacks flush runs:
            # a broker that came back empty refuses the idempotent producer's sequence
            # (OUT_OF_ORDER_SEQUENCE_NUMBER). The producer is done for; the caller makes one.
            raise DeliveryFailedError(f"the producer failed: {exc.__cause__ or exc}") from exc
        self.seconds["acknowledge"] += time.perf_counter() - flushing
        for span in delivery.spans:
            if remaining or delivery.failed:
                span.set_status(StatusCode.ERROR, "not acknowledged by the broker")
            span.end()
        if remaining or delivery.failed:
            raise DeliveryFailedError(delivery.error or f"{remaining} messages unacknowledged")

    def _wait_for_events(self, conn: psycopg.Connection[Any], stop: threading.Event) -> None:
        # Writers NOTIFY on commit; the timeout covers a missed notification and lets the
        # loop see `stop`.
        if not stop.is_set():
            for _ in conn.notifies(timeout=IDLE_WAIT_S, stop_after=1):
                pass

    def _check_partitions(self) -> None:
        # A broker may create a topic by itself when a producer names it, with its own
        # default partition count. Keys still map to one partition each, so order holds,
        # but consumer groups scale out less than configured: say so.
        found = partition_count(self._bootstrap, self._topic)
        if found != self._partitions:
            log.warning(
                "the notification topic has an unexpected partition count",
                topic=self._topic,
                partitions=found,
                configured=self._partitions,
            )

    def _reconcile(self, conn: psycopg.Connection[Any]) -> int:
        """The position to continue from, lowered to what the broker still holds."""
        position = stored_position(conn, TRACKING_NAME)
        while True:
            try:
                ensure_topics(self._bootstrap, topic_layout(self._namespace, self._partitions))
                on_broker = broker_position(self._bootstrap, self._topic)
                break
            except KafkaException as exc:
                log.warning("broker unavailable; retrying", error=str(exc))
                time.sleep(1.0)
        self._check_partitions()
        if on_broker is not None and on_broker < position:
            log.warning(
                "the broker lost published events; publishing them again",
                relay_position=position,
                broker_position=on_broker,
            )
            position = on_broker
            save_position(conn, TRACKING_NAME, position)
        return position


def reset_position(database_url: str, position: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        save_position(conn, TRACKING_NAME, position)
