"""Kafka plumbing shared by every role: topic layout, topic creation and a cheap liveness probe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from domain.events import DomainEvent
from infrastructure.eventstore.codec import EventCodec
from infrastructure.log import get_logger

log = get_logger(__name__)


def notifications_topic(namespace: str) -> str:
    """Every notification event, keyed by notification id."""
    return f"{namespace}.notifications.v1"


def dead_letter_topic(namespace: str) -> str:
    return f"{namespace}.notifications.dlq.v1"


PROJECTOR_GROUP = "projector.notifications"  # the notifications projectors' consumer group
DISPATCHER_GROUP = "dispatcher"  # the dispatchers' consumer group


def consumer_group(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


def topic_layout(namespace: str, partitions: int) -> list[TopicSpec]:
    """Every topic Herald uses, with explicit partition counts.

    Notification events are keyed by notification id, so `partitions` bounds how far the
    projector and dispatcher consumer groups scale out. Dead letters are rare: one partition.
    """
    return [
        TopicSpec(notifications_topic(namespace), partitions),
        TopicSpec(dead_letter_topic(namespace), 1),
    ]


def admin_client(bootstrap: str) -> AdminClient:
    # librdkafka logs every refused connection as an error; health probes report those instead.
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})


def broker_answers(bootstrap: str, timeout: float) -> bool:
    try:
        admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def ensure_topics(bootstrap: str, topics: list[TopicSpec], timeout: float = 10.0) -> list[str]:
    """Create the missing topics and return their names; existing topics are left as they are."""
    admin = admin_client(bootstrap)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [t for t in topics if t.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(t.name, num_partitions=t.partitions, replication_factor=1) for t in wanted],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    log.info("kafka topics created", topics=created)
    return created


def consumer_config(bootstrap: str, group: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Short group timeouts: the first assignment takes seconds instead of half a minute.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 10000,
        "fetch.wait.max.ms": 20,  # latency from the relay's produce to the read model
        "log_level": 3,
    }


def header_values(message: Message) -> dict[str, str]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        name: value.decode() if isinstance(value, bytes) else str(value)
        for name, value in pairs
        if value is not None
    }


@dataclass(frozen=True, slots=True)
class Published:
    """An event as the relay published it, with its place in its stream and in the log."""

    name: str  # the event type
    stream_id: UUID
    version: int
    position: int
    event: DomainEvent


def decode_published(message: Message, codec: EventCodec) -> Published | None:
    """The event a consumed message carries; None for a broker error (logged unless it only
    marks the end of a partition) or a message without a value, which the relay never sends."""
    error = message.error()
    if error is not None:
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("kafka consumer error", error=str(error))
        return None
    value = message.value()
    if value is None:
        log.warning("kafka message without a value skipped", offset=message.offset())
        return None
    headers = header_values(message)
    name = headers["event_type"]
    stream, _, version = headers["event_id"].rpartition(":")
    event = codec.decode(f"{name}@{headers['schema_version']}", value)
    return Published(name, UUID(stream), int(version), int(headers["position"]), event)


def next_batch(consumer: Consumer, most: int, timeout: float) -> list[Message]:
    """The messages already fetched, up to `most`, waiting at most `timeout` for the first.

    `Consumer.consume(most, timeout)` waits until it has `most` messages or the timeout has
    passed, so at a low rate every message would wait out the timeout; this returns as soon
    as there is anything to work on.
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(most - 1, timeout=0)]
